"""A local sandbox's writable state on the host: one size-capped tmpfs holding the work tree (as an
overlay upper over an optional read-only base), /tmp and the home directory.

The tmpfs caps disk use at `spec.disk`; the overlay makes seeding a work tree from a prepared base
free, and fork cheap (only the upper layer is copied). Without root (no mounts), plain directories
and a full copy of the base are used instead, and disk use is not capped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchard_envs.errors import SandboxError
from orchard_envs.sandbox.spec import SandboxSpec

CAN_MOUNT = os.geteuid() == 0


def default_state_root() -> Path:
    """$ORCHARD_STATE_DIR/local, else /var/lib/orchard/local as root, else the user's cache."""
    configured = os.environ.get("ORCHARD_STATE_DIR")
    if configured:
        return Path(configured) / "local"
    if CAN_MOUNT:
        return Path("/var/lib/orchard/local")
    return Path.home() / ".cache" / "orchard" / "local"


@dataclass
class Storage:
    """Host paths of one sandbox. `workspace` is what the sandbox sees at its workdir."""

    root: Path

    @property
    def rw(self) -> Path:
        """The size-capped tmpfs (a plain folder without root) that holds all writable state."""
        return self.root / "rw"

    @property
    def upper(self) -> Path:
        """The overlay's upper layer: the work tree's changes (the whole tree without a base)."""
        return self.rw / "upper"

    @property
    def tmp(self) -> Path:
        """The sandbox's /tmp."""
        return self.rw / "tmp"

    @property
    def home(self) -> Path:
        """The sandbox's home directory."""
        return self.rw / "home"

    @property
    def ctl(self) -> Path:
        """The control FIFOs' folder, seen inside as /.orchard; never copied into snapshots."""
        return self.rw / "ctl"

    @property
    def merged(self) -> Path:
        """The overlay mount point: the base with the upper layer on top."""
        return self.root / "merged"

    @property
    def meta_path(self) -> Path:
        """Where the sandbox's metadata (deadline and the like) is kept for reapers."""
        return self.root / "meta.json"

    def workspace(self, base: Path | None) -> Path:
        """The work tree as the sandbox sees it: the overlay when mounted over a base, else `upper`."""
        return self.merged if base is not None and CAN_MOUNT else self.upper

    # -- lifecycle ---------------------------------------------------------------------------------
    def create(self, spec: SandboxSpec, base: Path | None, copy_from: Path | None = None) -> None:
        """Lay out the dirs; `copy_from` is another sandbox's (or snapshot's) rw dir to start from."""
        self.rw.mkdir(parents=True)
        if CAN_MOUNT:
            size = f",size={spec.disk}" if spec.disk else ""
            _run(["mount", "-t", "tmpfs", "-o", f"mode=0755{size}", "orchard-sandbox", str(self.rw)])
        if copy_from is not None:
            copy_state(copy_from, self.rw)
        for d in (self.upper, self.tmp, self.home, self.ctl, self.rw / "work"):
            d.mkdir(exist_ok=True)
        self.tmp.chmod(0o1777)
        if base is not None:
            if CAN_MOUNT:
                self.merged.mkdir(exist_ok=True)
                # Relative paths, from this sandbox's folder: the sandbox reads these options back in
                # /proc/self/mountinfo, and they must not tell it where the host keeps its state.
                (self.root / "lower").symlink_to(base)
                options = "lowerdir=lower,upperdir=rw/upper,workdir=rw/work"
                _run(["mount", "-t", "overlay", "orchard-overlay", "-o", options, "merged"], cwd=self.root)
            elif copy_from is None:
                _copy_tree(base, self.upper)

    def write_meta(self, **fields: object) -> None:
        """Replace the metadata atomically, so a reaper never reads half a file."""
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(fields))
        tmp.replace(self.meta_path)

    def read_meta(self) -> dict:
        """The metadata, or {} if missing or unreadable."""
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}

    def destroy(self) -> None:
        """Unmount and delete; tolerant of half-built or already-removed state."""
        for mountpoint in (self.merged, self.rw):
            if CAN_MOUNT and os.path.ismount(mountpoint):
                subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


def copy_state(src_rw: Path, dest: Path) -> None:
    """Copy a sandbox's state (upper, tmp, home), leaving out control FIFOs and overlay scratch."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("upper", "tmp", "home"):
        if (src_rw / name).exists():
            _copy_tree(src_rw / name, dest / name)


def _copy_tree(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    # cp -a keeps overlay whiteouts (device nodes) and opaque-dir xattrs, which shutil would not.
    result = subprocess.run(["cp", "-a", f"{src}/.", f"{dest}/"], capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxError(f"copying sandbox state failed: {result.stderr.strip()}")


def _run(argv: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise SandboxError(f"{' '.join(argv[:3])} failed: {result.stderr.strip()}")


def expired(meta: dict, now: float | None = None) -> bool:
    """Whether the metadata's deadline passed; empty metadata is never expired."""
    return bool(meta) and meta.get("deadline", float("inf")) < (now or time.time())

