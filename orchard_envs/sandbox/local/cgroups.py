"""Per-sandbox cgroups (v1 or v2) for memory, pids and CPU: the kernel's own limits, not rlimits."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import warnings
from pathlib import Path

from orchard_envs.errors import BackendUnavailable, SandboxError
from orchard_envs.sandbox.spec import SandboxSpec

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
# Set to 1 to run sandboxes without their memory/pids/cpu limits where cgroups cannot be written.
OPT_OUT = "ORCHARD_ALLOW_UNLIMITED_SANDBOXES"


def _v2() -> bool:
    return (ROOT / "cgroup.controllers").exists()


class CgroupSet:
    """The cgroup directories of one sandbox; empty (no limits) where cgroups are not writable."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs

    @classmethod
    def create(cls, name: str, spec: SandboxSpec) -> CgroupSet:
        """The sandbox's own new cgroups with its limits written; a sandbox whose requested limits
        cannot be enforced is refused (BackendUnavailable) unless OPT_OUT is set."""
        if spec.memory is None and spec.pids is None and spec.cpu is None:
            return cls([])
        made: list[Path] = []
        try:
            (_create_v2 if _v2() else _create_v1)(name, spec, made)
            return cls(made)
        except FileExistsError:
            cls(made).remove()
            raise SandboxError(f"cgroup {name} already exists; refusing to reuse another's limits") from None
        except OSError as exc:
            cls(made).remove()  # nothing half-made stays behind
            if os.environ.get(OPT_OUT) != "1":
                raise BackendUnavailable(
                    "cannot enforce the sandbox's memory/pids/cpu limits: cgroups are not writable here "
                    f"({exc.strerror or exc}). Run as root on a host with cgroup2 mounted, or set "
                    f"{OPT_OUT}=1 to run sandboxes without limits"
                ) from None
            warnings.warn(
                f"cgroups are not writable here ({exc}); sandbox memory/pids/cpu limits are not enforced "
                f"({OPT_OUT}=1)",
                RuntimeWarning,
                stacklevel=3,
            )
            return cls([])

    def enter_script(self) -> str:
        """Shell that moves the current shell ($$) into every cgroup before it execs the sandbox."""
        return "".join(f"echo $$ > {d}/cgroup.procs && " for d in self.dirs)

    def kill_all(self, wait: float = 2.0) -> None:
        """SIGKILL every member and wait until the kernel has let them go (so rmdir can succeed)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def pids(self) -> set[int]:
        """Every pid in the sandbox's cgroups (none where cgroups are off)."""
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    def remove(self) -> None:
        """Remove the cgroup directories, retrying while exiting tasks still hold them."""
        for d in self.dirs:
            for _ in range(100):  # exiting tasks may hold the group for a moment
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)


def sweep_orphans(live: set[str]) -> None:
    """Remove empty per-sandbox cgroups left by sandboxes that no longer exist (e.g. a crashed host)."""
    parents = [ROOT / "orchard"] if _v2() else [ROOT / c / "orchard" for c in ("memory", "pids", "cpu")]
    for parent in parents:
        if not parent.is_dir():
            continue
        for d in parent.iterdir():
            # Age check: another process may be creating a sandbox whose directory we haven't seen.
            if d.is_dir() and d.name.startswith("sb-") and d.name not in live and _age(d) > 60:
                with contextlib.suppress(OSError):
                    d.rmdir()


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _write(path: Path, value: object) -> None:
    path.write_text(str(value))


def _create_v1(name: str, spec: SandboxSpec, made: list[Path]) -> None:
    limits = {
        "memory": [("memory.limit_in_bytes", spec.memory)],
        "pids": [("pids.max", spec.pids)],
        "cpu": [("cpu.cfs_period_us", PERIOD_US), ("cpu.cfs_quota_us", _quota(spec))],
    }
    for controller, settings in limits.items():
        d = ROOT / controller / "orchard" / name
        d.parent.mkdir(parents=True, exist_ok=True)
        d.mkdir()
        made.append(d)
        for filename, value in settings:
            if value is not None:
                _write(d / filename, value)


def _create_v2(name: str, spec: SandboxSpec, made: list[Path]) -> None:
    parent = ROOT / "orchard"
    parent.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        _write(ROOT / "cgroup.subtree_control", "+memory +pids +cpu")
    with contextlib.suppress(OSError):
        _write(parent / "cgroup.subtree_control", "+memory +pids +cpu")
    d = parent / name
    d.mkdir()
    made.append(d)
    if spec.memory is not None:
        _write(d / "memory.max", spec.memory)
        with contextlib.suppress(OSError):
            _write(d / "memory.swap.max", 0)
    if spec.pids is not None:
        _write(d / "pids.max", spec.pids)
    if spec.cpu is not None:
        _write(d / "cpu.max", f"{_quota(spec)} {PERIOD_US}")


def _quota(spec: SandboxSpec) -> int | None:
    return None if spec.cpu is None else max(1000, int(spec.cpu * PERIOD_US))
