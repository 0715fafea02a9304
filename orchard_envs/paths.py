"""Where Orchard keeps what it builds once and reuses (prepared repos, converted models)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """`$ORCHARD_CACHE`, else ~/.cache/orchard."""
    return Path(os.environ.get("ORCHARD_CACHE", Path.home() / ".cache" / "orchard"))


@contextmanager
def build_lock(path: Path) -> Iterator[None]:
    """One builder of `path` at a time across processes (parallel envs, pytest-xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
