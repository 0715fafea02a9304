"""Web suites by name: `load_suite("web-mini", split="test")`."""

from __future__ import annotations

import json
from importlib import resources

from orchard_envs.errors import ConfigError, unknown_name
from orchard_envs.tasks.web.task import WebTask

SUITES: dict[str, str] = {
    "web-mini": "self-hosted shop, webmail, travel and wiki tasks from templated families (train/test)",
}


def load_suite(name: str, split: str | None = None) -> list[WebTask]:
    """Every task of a bundled suite (optionally one split); unknown names list the known ones."""
    if name not in SUITES:
        raise unknown_name("web suite", name, SUITES)
    text = (resources.files("orchard_envs.tasks.web") / "data" / f"{name}.jsonl").read_text(encoding="utf-8")
    tasks = [WebTask.from_record(json.loads(line)) for line in text.splitlines() if line.strip()]
    if split is None:
        return tasks
    chosen = [task for task in tasks if task.split == split]
    if not chosen:
        raise ConfigError(f"suite {name} has no task in split {split!r}; splits: train, test")
    return chosen
