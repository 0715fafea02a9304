"""One root exception for the project, so callers can catch everything Orchard raises in one place."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OrchardError(Exception):
    """Root of every error Orchard raises on purpose."""


class SandboxError(OrchardError):
    """A sandbox operation failed because of the infrastructure, not the agent."""


class SandboxNotFound(SandboxError):
    """No sandbox with this id exists (never created, closed, or reaped after its TTL)."""


class SandboxClosed(SandboxError):
    """The sandbox was closed; create a new one (or fork before closing)."""


class SandboxFileNotFound(SandboxError, FileNotFoundError):
    """The path does not exist inside the sandbox."""


class PathEscapeError(SandboxError):
    """A path resolves outside the sandbox (via `..` or a symlink)."""


class PatchError(SandboxError):
    """A patch did not apply; the message carries git's explanation."""


class BackendUnavailable(SandboxError):
    """A backend's runtime (bubblewrap, Docker Engine, env service) is missing or not running."""


class ConfigError(OrchardError):
    """A setting or name is wrong; the message says what exists."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """Build the 'unknown X; did you mean Y? known: ...' error every registry lookup raises."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}{hint} known: {', '.join(known)}")
