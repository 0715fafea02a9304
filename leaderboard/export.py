"""`orchard-bench export`: a run's episodes in other tools' shapes.

`swebench` writes SWE-bench predictions (preds.json) so a run can be scored by SWE-bench's own harness;
`jsonl` writes the episodes in Orchard's episode schema. SWE-bench takes one prediction per instance, so
one trial (0 unless told) is exported; instances without that trial yet are left out and counted.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchard_envs.errors import ConfigError, unknown_name
from orchard_envs.leaderboard.store import ResultsStore
from orchard_envs.tasks.swe.swebench_io import prediction_row, write_predictions

ExportFormat = Literal["swebench", "jsonl"]
EXPORT_FORMATS = ("swebench", "jsonl")
SWE_ENV = "orchard/SWE-v0"
DEFAULT_NAMES = {"swebench": "preds.json", "jsonl": "export.jsonl"}


@dataclass(frozen=True)
class Exported:
    """Where an export went and how many rows it wrote."""

    path: Path
    written: int
    missing: int = 0  # instances without the requested trial (swebench only)


def _write_lines(path: Path, lines: list[str]) -> None:
    """Replace `path` atomically with these lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_swebench(store: ResultsStore, out: Path, trial: int = 0) -> Exported:
    """preds.json from each instance's `trial`: the episode's `patch` (None where the agent made none)."""
    config = store.config
    env_id = config.get("env_id")
    if env_id != SWE_ENV:
        raise ConfigError(
            f"--format swebench needs a SWE run ({SWE_ENV}); {store.path} is a run of suite "
            f"{config.get('suite')!r} on {env_id or 'another env'}"
        )
    rows = store.rows()
    wanted = {row["episode_id"] for row in rows if row["trial"] == trial}
    if not wanted:
        raise ConfigError(
            f"{store.path} has no finished trial {trial} (trials run: 0..{config.get('k', 1) - 1})"
        )
    model = str(config.get("model") or config.get("agent") or "orchard")
    predictions = [
        prediction_row(episode.metadata.task_id, model, (episode.metadata.model_extra or {}).get("patch"))
        for episode in store.episodes()
        if episode.metadata.episode_id in wanted
    ]
    instances = {row["task_id"] for row in rows}
    write_predictions(out, predictions)
    return Exported(Path(out), len(predictions), len(instances) - len(predictions))


def export_jsonl(store: ResultsStore, out: Path) -> Exported:
    """Every finished episode, one row a line, in the episode schema (read back with read_episodes)."""
    lines = [
        json.dumps(episode.to_row(), ensure_ascii=False, separators=(",", ":"))
        for episode in store.episodes()
    ]
    _write_lines(Path(out), lines)
    return Exported(Path(out), len(lines))


def export_run(run_dir: Path, fmt: ExportFormat, out: Path | None = None, trial: int = 0) -> Exported:
    """Export one run; `out` defaults to preds.json / export.jsonl inside the run directory."""
    if fmt not in EXPORT_FORMATS:
        raise unknown_name("export format", fmt, EXPORT_FORMATS)
    target = Path(out) if out is not None else Path(run_dir) / DEFAULT_NAMES[fmt]
    store = ResultsStore.open(Path(run_dir), readonly=True)
    try:
        if fmt == "swebench":
            return export_swebench(store, target, trial)
        return export_jsonl(store, target)
    finally:
        store.close()
