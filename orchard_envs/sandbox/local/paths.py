"""The local backend's host-side file access: sandbox paths resolved and opened so that no symlink,
planted or swapped in by the sandbox at any moment, makes the host touch a file outside it.

The host touches a sandbox's files directly (fast), while processes in the sandbox may rename, swap
(`renameat2(RENAME_EXCHANGE)`) or replace any directory of its writable areas at any time. So:

1. `resolve` follows symlinks the way the sandbox would see them and yields an area and the path's
   components inside it (no `.`, `..` or links left), or raises PathEscapeError.
2. Every open then walks those components from the area's root directory fd, one `openat` per
   component with `O_NOFOLLOW`, and creates directories with `mkdirat` on the fd it reached. A
   component swapped for a link after step 1 fails the walk (ELOOP/ENOTDIR): it is never followed.

Reading link targets in step 1 uses the same walk, so it too never follows a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchard_envs.errors import PathEscapeError

MAX_SYMLINKS = 40
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Area:
    """A writable sandbox directory (e.g. /workspace) and where it lives on the host."""

    sandbox: str
    host: Path


@dataclass(frozen=True)
class Location:
    """A resolved sandbox path: its area and the link-free components below the area's root."""

    area: Area
    parts: tuple[str, ...]

    @property
    def host(self) -> Path:
        """The host path, for messages and tests only: opening it by path would follow links."""
        return self.area.host.joinpath(*self.parts)


def _area_of(path: str, areas: list[Area]) -> tuple[Area, tuple[str, ...]] | None:
    for area in sorted(areas, key=lambda a: -len(a.sandbox)):
        if path == area.sandbox or path.startswith(area.sandbox.rstrip("/") + "/"):
            relative = posixpath.relpath(path, area.sandbox)
            return area, tuple(p for p in relative.split("/") if p not in ("", "."))
    return None


def resolve(path: str, areas: list[Area], follow_last: bool = True) -> Location:
    """Resolve absolute sandbox `path` into one of `areas`, or raise PathEscapeError."""
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
            target = _readlink(Location(*found))
            if target is not None:
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise PathEscapeError(f"too many levels of symbolic links in {path!r}")
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
    return Location(*found)


def _readlink(location: Location) -> str | None:
    """The link target at `location`, or None if it is not a link (or cannot be reached link-free)."""
    if not location.parts:
        return None
    try:
        with parent_dir(location) as (parent, name):
            return os.readlink(name, dir_fd=parent)
    except OSError:
        return None


@contextlib.contextmanager
def parent_dir(location: Location, create: bool = False) -> Iterator[tuple[int, str]]:
    """An fd of `location`'s parent, reached without following any link, and the last name ('.' for
    an area's root). `create` makes missing directories on the way (mkdirat, 0o755)."""
    *folders, name = location.parts or (".",)
    fd = os.open(location.area.host, _DIR_FLAGS)
    try:
        for folder in folders:
            child = _step(fd, folder, create)
            os.close(fd)
            fd = child
        yield fd, name
    finally:
        os.close(fd)


def _step(parent: int, name: str, create: bool) -> int:
    """An fd of directory `name` under `parent`; a link there is an error (ENOTDIR), never followed."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, _DIR_FLAGS, dir_fd=parent)


def describe(exc: OSError) -> str:
    """What a failed link-free walk means, in words a user can act on."""
    if exc.errno == errno.ELOOP:
        return "a path component is a symbolic link that changed while the host was using it"
    return exc.strerror or str(exc)
