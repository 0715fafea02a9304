"""The Claw oracle: the task's own reference plan (retries after scheduled faults included)."""

from __future__ import annotations

from typing import Any

from orchard_envs.agents.base import EpisodeContext, ScriptedAgent


def plan(task: Any, tool_names: list[str]) -> list[dict[str, Any]]:
    """The Claw task's oracle actions: the plan that must score 1.00."""
    return [action.model_dump() for action in task.oracle]


class WrongAgent(ScriptedAgent):
    """Plays the task's do-the-wrong-thing plan: `orchard-tasks claw check` requires it to fail."""

    name = "wrong"

    def plan(self, context: EpisodeContext) -> list[dict[str, Any]]:
        """The task's deliberately wrong actions, which the grader must not reward."""
        return [action.model_dump() for action in context.task.wrong]
