"""Which recorded episodes a run trains on: files by glob, then filters on the episode metadata."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchard_envs.episodes import Episode, ReadReport, read_episodes
from orchard_envs.errors import ConfigError


@dataclass(frozen=True)
class EpisodeFilter:
    """Every field left as None lets all episodes through."""

    suite: str | None = None
    split: str | None = None
    harness: str | None = None
    model: str | None = None
    resolved: bool | None = None
    min_reward: float | None = None
    max_turns: int | None = None  # assistant messages


@dataclass
class Selection:
    """The episodes chosen for training, and what was left out."""

    episodes: list[Episode] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    invalid: int = 0  # unreadable lines, each already warned about with file and line
    filtered_out: int = 0

    def summary(self) -> str:
        """One line for the log: how many episodes, from how many files, how many left out."""
        return (
            f"{len(self.episodes)} episodes from {len(self.files)} file(s); "
            f"{self.filtered_out} filtered out, {self.invalid} invalid line(s) skipped"
        )


def episode_files(patterns: Iterable[str]) -> list[Path]:
    """Paths and globs (`runs/*/episodes.jsonl`); a pattern that matches nothing is a mistake, not a no-op."""
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern, recursive=True)) or ([pattern] if Path(pattern).is_file() else [])
        if not matched:
            raise ConfigError(f"no episode file matches {pattern!r}; pass a JSONL/Parquet path or a glob")
        for name in matched:
            path = Path(name)
            if path.is_dir():
                path = path / "episodes.jsonl"  # an orchard-bench run folder
            if not path.is_file():
                raise ConfigError(f"{name} is not an episode file (nor a run folder with episodes.jsonl)")
            if path not in files:
                files.append(path)
    if not files:
        raise ConfigError("no episode files given; pass --episodes PATH_OR_GLOB")
    return files


def select_episodes(patterns: Iterable[str], keep: EpisodeFilter) -> Selection:
    """The episodes of the files matching `patterns` that `keep` accepts; invalid lines are warned about."""
    selection = Selection(files=episode_files(patterns))
    for path in selection.files:
        report = ReadReport()
        for episode in read_episodes(
            path,
            suite=keep.suite,
            split=keep.split,
            harness=keep.harness,
            model=keep.model,
            resolved=keep.resolved,
            min_reward=keep.min_reward,
            report=report,
        ):
            turns = sum(message["role"] == "assistant" for message in episode.messages)
            if keep.max_turns is not None and turns > keep.max_turns:
                selection.filtered_out += 1
                continue
            selection.episodes.append(episode)
        selection.invalid += len(report.invalid)
        selection.filtered_out += report.filtered_out
    return selection
