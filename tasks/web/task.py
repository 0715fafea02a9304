"""The web task format (`WebTask`): what the agent is told, where it starts, and the hidden grading data.

`expected` and `oracle` are hidden (the grader's parameters and the reference plan); `to_info()` is what
an episode's `info["task"]` may show. An oracle plan is a tuple of steps that name controls by ARIA role
and accessible name, never by element id, so it survives any bid assignment:
`{"do": "click", "role": "button", "name": "Add to cart"}`, `{"do": "fill", "role": "textbox",
"name": "Search", "text": "..."}`, `{"do": "select", "role": "combobox", "name": "Brand", "option": "..."}`,
`{"do": "check", ...}`, `{"do": "press", "key": "Enter"}`, `{"do": "goto", "path": "/..."}`,
`{"do": "done", "answer": "..."}`, `{"do": "infeasible", "reason": "..."}`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from orchard_envs.errors import ConfigError

STEP_KINDS = ("click", "fill", "select", "check", "press", "goto", "done", "infeasible")
SITES = ("shop", "mail", "travel", "wiki")


@dataclass(frozen=True)
class WebTask:
    """One web task; `expected`, `oracle` and `wrong` are hidden from the agent."""

    task_id: str
    suite: str
    split: str
    family: str
    instruction: str
    site: str
    start_path: str
    seed: int
    expected: dict[str, Any]
    infeasible: bool = False
    oracle: tuple[dict[str, Any], ...] = ()
    wrong: tuple[dict[str, Any], ...] = field(default=())  # a do-the-wrong-thing plan, graded < 1

    def __post_init__(self) -> None:
        if self.site not in SITES:
            raise ConfigError(f"task {self.task_id}: unknown site {self.site!r}; sites: {', '.join(SITES)}")
        for plan in (self.oracle, self.wrong):
            for step in plan:
                if step.get("do") not in STEP_KINDS:
                    raise ConfigError(f"task {self.task_id}: plan step {step} has no known 'do' {STEP_KINDS}")

    def to_info(self) -> dict[str, Any]:
        """The task as `info["task"]` shows it: everything but the grader's data and the plans."""
        return {
            "task_id": self.task_id,
            "suite": self.suite,
            "split": self.split,
            "family": self.family,
            "instruction": self.instruction,
            "site": self.site,
            "start_path": self.start_path,
            "seed": self.seed,
        }

    def record(self) -> dict[str, Any]:
        """The full task as one JSON-ready dict (a line of the suite's JSONL)."""
        data = asdict(self)
        data["oracle"], data["wrong"] = list(self.oracle), list(self.wrong)
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> WebTask:
        """A task from `record()`'s dict; unknown or missing keys are a ConfigError naming them."""
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise ConfigError(f"web task {data.get('task_id')!r}: unknown keys {sorted(extra)}")
        try:
            return cls(
                **{**data, "oracle": tuple(data.get("oracle", ())), "wrong": tuple(data.get("wrong", ()))}
            )
        except TypeError as exc:
            raise ConfigError(f"web task {data.get('task_id')!r}: {exc}") from None


def dumps(task: WebTask) -> str:
    """One JSONL line for a task (UTF-8, keys in field order)."""
    return json.dumps(task.record(), ensure_ascii=False)
