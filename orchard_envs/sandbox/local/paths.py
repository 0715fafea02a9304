"""Map sandbox paths to host paths for the files API, following symlinks the way the sandbox would.

The host touches a sandbox's files directly (fast), so a symlink planted by the agent must never make
the host read or write outside the sandbox's writable areas: symlinks are resolved inside the
sandbox's own view, and the result must land in one of those areas.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from orchard_envs.errors import PathEscapeError

MAX_SYMLINKS = 40


@dataclass(frozen=True)
class Area:
    """A writable sandbox directory (e.g. /workspace) and where it lives on the host."""

    sandbox: str
    host: Path


def _area_of(path: str, areas: list[Area]) -> tuple[Area, str] | None:
    for area in sorted(areas, key=lambda a: -len(a.sandbox)):
        if path == area.sandbox or path.startswith(area.sandbox.rstrip("/") + "/"):
            return area, posixpath.relpath(path, area.sandbox)
    return None


def to_host(path: str, areas: list[Area], follow_last: bool = True) -> Path:
    """Resolve absolute sandbox `path` to a host path inside one of `areas`, or raise PathEscapeError."""
    parts = [p for p in path.split("/") if p]
    resolved = "/"
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = posixpath.dirname(resolved)
            continue
        candidate = posixpath.join(resolved, part)
        found = _area_of(candidate, areas)
        if found is not None and (parts or follow_last):
            host = _host_path(*found)
            if host.is_symlink():
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise PathEscapeError(f"too many levels of symbolic links in {path!r}")
                target = os.readlink(host)
                parts = [p for p in target.split("/") if p] + parts
                resolved = "/" if target.startswith("/") else resolved
                continue
        resolved = candidate
    found = _area_of(resolved, areas)
    if found is None:
        allowed = ", ".join(a.sandbox for a in areas)
        raise PathEscapeError(
            f"{path!r} resolves to {resolved!r}, outside the sandbox's writable areas ({allowed}); "
            "use exec to read other files"
        )
    return _host_path(*found)


def _host_path(area: Area, relative: str) -> Path:
    return area.host if relative == "." else area.host / relative
