"""Finding and reading the runs under some folders, for the leaderboard and the report.

A folder holding `results.db` is one run. Anything that cannot be read (an incompatible schema, a damaged
database, a run with nothing finished yet) becomes one warning line and is left out: one bad directory
must not hide every other run's results.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchard_envs.errors import OrchardError
from orchard_envs.leaderboard.stats import RunSummary, summarize
from orchard_envs.leaderboard.store import DB_NAME, ResultsStore

DEFAULT_DIRS = (Path("runs"),)
Warn = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One readable run: where it is, how it was configured, and its summary."""

    name: str
    path: Path
    config: dict[str, Any]
    created_at: str
    summary: RunSummary

    @property
    def k(self) -> int:
        """Trials per task of the run."""
        return self.summary.k

    @property
    def model(self) -> str:
        """The model if the config names one, else the agent (scripted agents have no model)."""
        return str(self.config.get("model") or self.config.get("agent") or "")


def find_run_dirs(dirs: Iterable[Path]) -> list[tuple[Path, Path]]:
    """(run dir, the searched folder it was found under) for every results.db below `dirs`, each once."""
    found: dict[Path, tuple[Path, Path]] = {}
    for root in dirs:
        root = Path(root)
        candidates = [root / DB_NAME] if (root / DB_NAME).is_file() else sorted(root.rglob(DB_NAME))
        for database in candidates:
            if database.is_file():
                found.setdefault(database.parent.resolve(), (database.parent, root))
    return sorted(found.values(), key=lambda pair: str(pair[0]))


def run_name(run_dir: Path, root: Path) -> str:
    """The folder's name, or its path below the searched folder, so two `runs/*/x` stay apart."""
    try:
        relative = run_dir.resolve().relative_to(root.resolve())
    except ValueError:
        return run_dir.name
    return str(relative) if relative.parts else run_dir.resolve().name


def read_run(run_dir: Path, name: str) -> Run:
    """Open one run read-only and summarize it; ConfigError or ValueError say why it cannot be shown."""
    store = ResultsStore.open(run_dir, readonly=True)
    try:
        config, created_at, rows = store.config, store.created_at, store.rows()
    finally:
        store.close()
    if not isinstance(config, dict):
        raise ValueError("its meta.config is not a JSON object")
    k = int(config.get("k") or 1)
    if not rows:
        raise ValueError("no finished episodes yet")
    return Run(name, run_dir, config, created_at, summarize(rows, k))


def load_runs(dirs: Iterable[Path], suite: str | None = None, warn: Warn | None = None) -> list[Run]:
    """Every readable run below `dirs` (of `suite` when given); the others are reported through `warn`."""
    warn = warn or (lambda message: None)
    dirs = list(dirs)
    for missing in (d for d in dirs if not Path(d).exists()):
        warn(f"{missing}: no such directory")
    runs = []
    for run_dir, root in find_run_dirs(d for d in dirs if Path(d).exists()):
        try:
            run = read_run(run_dir, run_name(run_dir, root))
        except (OrchardError, sqlite3.Error, OSError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            # the store's messages already name the directory; say it once
            warn(f"skipped: {reason}" if str(run_dir) in reason else f"{run_dir}: skipped: {reason}")
            continue
        if suite is None or run.config.get("suite") in _suite_names(suite):
            runs.append(run)
    return runs


def _suite_names(suite: str) -> set[str]:
    """What a run may have recorded for `--suite`: the name as typed, or the file it resolves to (runs record
    suite files by resolved path)."""
    from orchard_envs.leaderboard.suites import suite_name

    return {suite, suite_name(suite)}
