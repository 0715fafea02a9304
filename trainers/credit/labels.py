"""Step labels and what they train: the label type, the scorer protocol and registry, the policies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from orchard_envs.episodes import Episode
from orchard_envs.errors import unknown_name
from orchard_envs.registry import construct

StepLabelName = Literal["good", "unnecessary", "mistake", "recovery"]
LABELS: tuple[StepLabelName, ...] = ("good", "unnecessary", "mistake", "recovery")
POLICIES = ("prefix", "good")
SCORERS: dict[str, str] = {
    "heuristic": "orchard_envs.trainers.credit.heuristic:HeuristicScorer",
    "judge": "orchard_envs.trainers.credit.judge:JudgeScorer",
}


@dataclass(frozen=True)
class StepLabel:
    """The credit label of one assistant message, with a one-line reason."""

    message_index: int  # index into episode.messages of an assistant message
    label: StepLabelName
    critical: bool  # a mistake that derails the episode (cut point for the prefix policy)
    reason: str  # one line, human readable

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r} is not one of {', '.join(LABELS)}")
        if self.critical and self.label != "mistake":
            raise ValueError(f"only a mistake can be critical, not a step labelled {self.label!r}")


class StepScorer(Protocol):
    """Assigns credit labels to an episode's steps (heuristic or judge)."""

    name: str

    def score(self, episode: Episode) -> list[StepLabel]:
        """Exactly one label per assistant message, in order."""
        ...


def make_scorer(name: str, **options: Any) -> StepScorer:
    """A scorer by registry name ('heuristic', 'judge'); options go to its constructor."""
    return construct("scorer", SCORERS, name, **options)


def one_line(text: str, limit: int = 80) -> str:
    """The text on one line, cut to `limit` characters: how reasons quote actions and messages."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def replies(episode: Episode) -> list[int]:
    """Message indices of the episode's assistant messages: its steps, in order."""
    return [i for i, message in enumerate(episode.messages) if message.get("role") == "assistant"]


def trained_steps(episode: Episode, labels: Sequence[StepLabel], policy: str = "prefix") -> list[int]:
    """Message indices of the assistant messages that get loss.

    Resolved episodes (metadata.resolved is True) train every step, whatever the labels (pass [] to skip
    scoring them). Otherwise `prefix` keeps the steps before the first critical label, and `good` keeps only
    the good and recovery steps among those.
    """
    if policy not in POLICIES:
        raise unknown_name("credit-assignment policy", policy, POLICIES)
    indices = replies(episode)
    if episode.metadata.resolved is True:
        return indices
    labelled = [label.message_index for label in labels]
    if labelled != indices:
        raise ValueError(
            f"the labels cover messages {labelled}, but the episode's assistant messages are {indices}: "
            "a scorer gives exactly one label per assistant message, in order"
        )
    kept: list[int] = []
    for label in labels:
        if label.critical:
            break
        if policy == "prefix" or label.label in ("good", "recovery"):
            kept.append(label.message_index)
    return kept
