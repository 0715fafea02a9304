"""Chromium through Playwright's sync API: one browser per env, a fresh context per episode.

A launch costs about a second; a context (no cookies, storage, cache or permissions of any earlier
episode) costs milliseconds, so `Browser` stays open across episodes and `Browser.new_session` gives each
episode its own `Session`: the context, its tabs, and the navigation guard wired to every request.
The Playwright sync API is bound to the thread that started it: use an env from one thread (vector envs
use processes). Chromium comes from Debian (`/usr/bin/chromium`, or `chromium=` / `ORCHARD_CHROMIUM`); as
root it needs `--no-sandbox` (see docs/security.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
from typing import Any

import numpy as np

from orchard_envs.errors import BackendUnavailable
from orchard_envs.web.axtree import EXTRACT_JS, nodes_from_page, render_axtree
from orchard_envs.web.guard import Guard, launch_args

CHROMIUM_ENV = "ORCHARD_CHROMIUM"
# Runs before any page script, in every frame: a service worker could answer requests the route never sees.
NO_SERVICE_WORKERS_JS = """
Object.defineProperty(Navigator.prototype, 'serviceWorker', {get: () => undefined, configurable: false});
"""
TAKE_POPUPS_JS = "() => { const n = window.__orchardPopups || 0; window.__orchardPopups = 0; return n; }"
# Counts the tabs a page asks for (window.open, target=_blank links), so `settle` knows to wait for them.
COUNT_POPUPS_JS = """
(() => {
  window.__orchardPopups = 0;
  const open = window.open;
  window.open = function (...args) { window.__orchardPopups++; return open.apply(this, args); };
  document.addEventListener('click', (e) => {
    const a = e.target && e.target.closest && e.target.closest('a[target]');
    if (a && a.target !== '_self' && a.target !== '_top' && a.target !== '_parent') window.__orchardPopups++;
  }, true);
})();
"""


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium to launch: `explicit`, $ORCHARD_CHROMIUM, Debian's, or None (Playwright's own)."""
    for candidate in (explicit, os.environ.get(CHROMIUM_ENV), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


_THREAD = threading.local()


def _driver_acquire(start: Any) -> Any:
    """This thread's Playwright driver, started at its first user: Playwright's sync API allows one per
    thread (a second `start()` beside a running one fails), so envs in one thread share it, each with
    its own browser."""
    if getattr(_THREAD, "users", 0) == 0:
        _THREAD.driver = start().start()
    _THREAD.users = getattr(_THREAD, "users", 0) + 1
    return _THREAD.driver


def _driver_release() -> None:
    _THREAD.users -= 1
    if _THREAD.users == 0:
        driver, _THREAD.driver = _THREAD.driver, None
        with contextlib.suppress(Exception):  # already gone
            driver.stop()


class Browser:
    """One headless Chromium, launched at the first session and kept until `close`."""

    def __init__(self, *, chromium: str | None = None, headless: bool = True) -> None:
        self.chromium, self.headless = chromium, headless
        self._playwright: Any = None
        self._browser: Any = None

    def _launch(self) -> Any:
        if self._browser is None:
            from playwright.sync_api import sync_playwright

            args = launch_args() + (["--no-sandbox"] if os.geteuid() == 0 else [])
            self._playwright = _driver_acquire(sync_playwright)
            try:
                self._browser = self._playwright.chromium.launch(
                    executable_path=find_chromium(self.chromium), headless=self.headless, args=args
                )
            except Exception as exc:
                self.close()
                raise BackendUnavailable(
                    f"Chromium did not start ({exc}); install it (apt-get install chromium) or pass chromium="
                ) from exc
        return self._browser

    def new_session(self, origins: list[str], viewport: tuple[int, int], timeout_ms: int) -> Session:
        """A fresh context whose requests only reach `origins`; service workers and downloads are off."""
        context = self._launch().new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            service_workers="block",
            accept_downloads=False,
            java_script_enabled=True,
        )
        context.add_init_script(NO_SERVICE_WORKERS_JS)  # Playwright's "block" alone lets them register
        context.add_init_script(COUNT_POPUPS_JS)
        return Session(context, Guard(origins), timeout_ms)

    def connected(self) -> bool:
        """The browser is running (False before the first session, or after it crashed)."""
        return self._browser is not None and self._browser.is_connected()

    def close(self) -> None:
        """Close the browser and Playwright (idempotent)."""
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        with contextlib.suppress(Exception):  # already gone: nothing left to release
            if browser is not None:
                browser.close()
        if playwright is not None:
            _driver_release()


class Session:
    """One episode's browser context: its tabs (one active), the guard, and what the page looks like."""

    def __init__(self, context: Any, guard: Guard, timeout_ms: int) -> None:
        self.context, self.guard, self.timeout_ms = context, guard, timeout_ms
        context.set_default_timeout(timeout_ms)
        context.set_default_navigation_timeout(max(timeout_ms, 5000))
        context.route("**/*", self._route)
        self.active = 0
        self._asked = self._arrived = 0  # popups the pages asked for, and popups that opened
        context.new_page()
        context.on("page", self._opened)  # a popup the page opens becomes the active tab

    def _opened(self, page: Any) -> None:
        if page.opener() is not None:
            self._arrived += 1
        pages = self.pages
        if page in pages:
            self.active = pages.index(page)

    def _route(self, route: Any, request: Any) -> None:
        if self.guard.allows(request.url):
            route.continue_()
        else:
            self.guard.note(request.url, request.is_navigation_request())
            route.abort("blockedbyclient")

    @property
    def pages(self) -> list[Any]:
        """The open tabs, in the order they opened."""
        return [page for page in self.context.pages if not page.is_closed()]

    @property
    def page(self) -> Any:
        """The active tab (a new blank one if every tab was closed)."""
        pages = self.pages
        if not pages:
            self.context.new_page()
            pages = self.pages
        self.active = min(self.active, len(pages) - 1)
        return pages[self.active]

    def settle(self) -> None:
        """After an action: follow a tab the page opened, and send any tab that reached a URL outside the
        allowed origins (something the route cannot see) back to about:blank."""
        self._await_popups()
        for page in self.pages:
            if not self.guard.allows(page.url):
                self._send_back(page)
        with contextlib.suppress(Exception):  # a slow page is observed as it is
            self.page.wait_for_load_state("domcontentloaded", timeout=self.timeout_ms)

    def _await_popups(self) -> None:
        """Wait (up to the action timeout) for the tabs the pages asked for to appear: a popup's `page`
        event can come after the click that opened it returns."""
        for page in self.pages:
            with contextlib.suppress(Exception):  # a page mid-navigation asked for nothing yet
                self._asked += int(page.evaluate(TAKE_POPUPS_JS))
        deadline = time.monotonic() + self.timeout_ms / 1000
        while self._arrived < self._asked and time.monotonic() < deadline:
            self.page.wait_for_timeout(20)  # lets Playwright deliver the pending events
        self._asked = self._arrived = min(self._asked, self._arrived)

    def _send_back(self, page: Any) -> None:
        """A tab on a URL the episode may not show (the error page of a blocked navigation, a scheme the
        route never sees): back to where it was, else about:blank."""
        if not page.url.startswith("chrome-error:"):
            self.guard.note(page.url, True)
        with contextlib.suppress(Exception):
            page.go_back()
        if not self.guard.allows(page.url):
            page.goto("about:blank")

    def screenshot_png(self) -> bytes:
        """The active tab's viewport as PNG."""
        return self.page.screenshot(type="png", timeout=self.timeout_ms)

    def describe(self, ax_tree: bool) -> str:
        """URL, tabs, focused element, and (by option) the AX tree, as the observation's text."""
        page = self.page
        tabs = " | ".join(
            f"{i}{'*' if i == self.active else ''} {_title(p)!r} {p.url}" for i, p in enumerate(self.pages)
        )
        lines = [f"URL: {page.url}", f"Tabs: {tabs}"]
        tree = ""
        try:
            found = page.evaluate(EXTRACT_JS, "")
            lines.append(f"Focused: [{found['focused']}]" if found["focused"] else "Focused: none")
            tree = render_axtree(nodes_from_page(found["nodes"])) if ax_tree else ""
        except Exception as exc:  # a page mid-navigation has no document to read
            lines.append(f"(the page could not be read: {_short(exc)})")
        return "\n".join(lines) + (f"\nAX tree:\n{tree}" if tree else "")

    def close(self) -> None:
        """Close the context and every tab in it."""
        with contextlib.suppress(Exception):  # the browser went away first
            self.context.close()


def _title(page: Any) -> str:
    try:
        return page.title()
    except Exception:
        return ""


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def decode_png(png: bytes) -> np.ndarray:
    """PNG bytes as an H x W x 3 uint8 array."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))
