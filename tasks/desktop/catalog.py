"""The desktop suites: `desktop-mini` (8 families x 8 tasks, a quarter of each family held out as test)."""

from __future__ import annotations

import functools

from orchard_envs.desktop.osworld import check_task
from orchard_envs.errors import ConfigError, unknown_name
from orchard_envs.tasks.desktop.families import generate
from orchard_envs.tasks.desktop.task import DesktopTask

SUITES = {"desktop-mini": "64 templated tasks over mousepad, gnumeric, pcmanfm and a terminal (8 families)"}
SPLITS = ("train", "test")


@functools.cache
def _suite(name: str) -> tuple[DesktopTask, ...]:
    tasks = []
    for family, index, spec in generate(per_family=8, seed=16):
        check_task(spec["config"], spec["evaluator"])
        tasks.append(
            DesktopTask(
                task_id=f"{family}-{index:02d}",
                suite=name,
                split="test" if index % 4 == 3 else "train",
                family=family,
                instruction=spec["instruction"],
                config=tuple(spec["config"]),
                evaluator=spec["evaluator"],
                oracle=tuple(spec["oracle"]),
                infeasible=spec.get("infeasible", False),
            )
        )
    return tuple(tasks)


def load_suite(name: str, split: str | None = None) -> list[DesktopTask]:
    """The suite's tasks, optionally one split; unknown names raise with the close match."""
    if name not in SUITES:
        raise unknown_name("desktop suite", name, SUITES)
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return [task for task in _suite(name) if split is None or task.split == split]
