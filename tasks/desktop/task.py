"""One desktop task: an instruction, OSWorld-style setup steps and evaluator, and the oracle's plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DesktopTask:
    """A task of `orchard/Desktop-v0`. `evaluator` and `oracle` are hidden from the agent."""

    task_id: str
    suite: str
    split: str
    family: str
    instruction: str
    config: tuple[dict[str, Any], ...]
    evaluator: dict[str, Any]
    oracle: tuple[dict[str, Any], ...] = field(default=())
    infeasible: bool = False

    def to_info(self) -> dict[str, Any]:
        """What `info["task"]` shows: no evaluator, no oracle."""
        return {"task_id": self.task_id, "suite": self.suite, "split": self.split, "family": self.family}

    def to_osworld(self) -> dict[str, Any]:
        """The task as OSWorld's JSON (id, instruction, config, evaluator)."""
        return {
            "id": self.task_id,
            "instruction": self.instruction,
            "config": list(self.config),
            "evaluator": self.evaluator,
        }
