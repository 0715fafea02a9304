"""The navigation guard: a page may load only from the episode's allowed loopback origins.

Every request of the episode's browser context passes `Guard.allows`: http(s) to an allowed origin
(scheme, host and port all equal) goes through, anything else is aborted and noted, so the next
observation reports it. `check_url` refuses the agent's own `goto` before the browser sees it (file:,
chrome:, data:, javascript: and any other scheme, or another origin). Chromium is also launched with a dead
proxy for everything that is not loopback (`launch_args`), so a request the route never sees (a WebSocket,
a prefetch) still cannot leave the machine. Service workers (which could answer requests outside the
route) and downloads are switched off on every context (`runtime.Browser.new_session`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

ALWAYS_ALLOWED = ("about:blank",)
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, so a proxied request fails at once


def origin_of(url: str) -> str:
    """`scheme://host:port` of an http(s) URL (default ports made explicit); '' for other schemes."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


def launch_args() -> list[str]:
    """Chromium flags: every non-loopback connection goes to a proxy that is not there."""
    return [f"--proxy-server={DEAD_PROXY}", "--proxy-bypass-list=127.0.0.1;localhost;[::1]"]


class Guard:
    """The allowed origins of one episode, and what was blocked since the last observation."""

    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(origin_of(url) for url in origins) - {""}
        self.blocked: list[str] = []

    def allows(self, url: str) -> bool:
        """A URL the episode may load (its origin is allowed, or it is about:blank)."""
        return url in ALWAYS_ALLOWED or origin_of(url) in self.origins

    def check_url(self, url: str) -> str | None:
        """Why the agent may not go to `url`, or None."""
        if self.allows(url):
            return None
        scheme = urlsplit(url).scheme or "(none)"
        if scheme not in ("http", "https"):
            return f"navigation to {url!r} is blocked: the {scheme}: scheme is not allowed (http(s) only)"
        allowed = ", ".join(sorted(self.origins)) or "none"
        return f"navigation to {url!r} is blocked: only these origins are allowed: {allowed}"

    def note(self, url: str, navigation: bool) -> None:
        """Remember a blocked request for the next observation (a few are kept, not a flood)."""
        kind = "navigation" if navigation else "request"
        if len(self.blocked) < 5:
            self.blocked.append(f"blocked {kind} to {url[:200]}")

    def take(self) -> list[str]:
        """The blocked requests since the last call, cleared."""
        blocked, self.blocked = self.blocked, []
        return blocked
