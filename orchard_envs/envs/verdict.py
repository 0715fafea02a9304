"""The verdict every Orchard env returns when an episode ends: one typed model, whatever the grader.

A step that ends an episode carries it twice in `info`: `info["verdict"]`, the `Verdict` itself (what the
runner reads), and `info["grading"]`, the same verdict as a plain JSON-ready dict, for code that reads
dicts (and for vector envs, whose `info` are dicts of arrays). Each env may add its own fields in a
subclass (SWE: the patch, the dropped files, the canary; Claw: the completion, safety and robustness
scores and the call trace); the common fields mean the same thing everywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Verdict(BaseModel):
    """How the env's grader judged an ended episode."""

    model_config = ConfigDict(extra="forbid")

    status: str = Field(description="the grader's word: SWE resolved/unresolved/error, Claw passed/failed")
    reward: float = Field(description="the episode's reward, also returned by the step that ended it")
    resolved: bool = Field(description="the task counts as solved")
    breakdown: dict[str, float] = Field(default_factory=dict, description="the reward's named components")
    suspicious: list[str] | None = Field(
        None,
        description="reasons the grader doubts the outcome (a forged test report, say); None where the "
        "grader makes no such checks, [] where it checked and found none",
    )
    reason: str = Field("", description="why the grader decided so, where it says (an unusable diff, say)")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds spent grading, by phase")

    def episode_extras(self) -> dict[str, Any]:
        """Env-specific fields the recorded episode keeps beside the common ones (SWE: its patch)."""
        return {}

    def as_info(self) -> dict[str, Any]:
        """The verdict as `info["grading"]`: a JSON-ready dict of every field."""
        return self.model_dump(mode="json")
