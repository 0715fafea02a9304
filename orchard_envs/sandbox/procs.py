"""Host-side process-tree surgery: kill what a timed-out command started, and nothing else."""

from __future__ import annotations

import os
import signal
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, start time in seconds since boot) of a live process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces and ')'
    return int(fields[1]), int(fields[19]) / _CLK_TCK


def process_table() -> dict[int, tuple[int, float]]:
    """A snapshot of /proc: pid -> (parent pid, start time since boot), for tree walks."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None:
                table[int(entry.name)] = info
    return table


def descendants(root: int, table: dict[int, tuple[int, float]] | None = None) -> list[int]:
    """Every process below `root` (not `root` itself), parents before children."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, frontier = [], [root]
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, ())]
        found.extend(nxt)
        frontier = nxt
    return found


def kill_started_since(root: int, since_boot_seconds: float, rounds: int = 5) -> int:
    """SIGKILL every descendant of `root` started at or after `since_boot_seconds` (CLOCK_BOOTTIME).

    Repeats a few rounds so that processes forked while we were killing are caught too. Returns the
    number of signals sent.
    """
    slack = 1.0 / _CLK_TCK  # start times have clock-tick resolution
    sent = 0
    for _ in range(rounds):
        table = process_table()
        victims = [p for p in descendants(root, table) if table[p][1] >= since_boot_seconds - slack]
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
                sent += 1
            except ProcessLookupError:
                pass
    return sent


def find_by_nspid(root: int, nspid: int) -> int | None:
    """The host pid of the process below `root` whose pid in its own namespace is `nspid`."""
    for pid in descendants(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and int(line.split()[-1]) == nspid:
                return pid
    return None
