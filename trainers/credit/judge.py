"""The judge scorer: asks any agent endpoint for the step labels, falling back to the heuristic per step."""

from __future__ import annotations

import json
import re
from typing import Any

from orchard_envs.agents.base import Agent, ContextOverflow
from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError
from orchard_envs.text import clip
from orchard_envs.trainers.credit.heuristic import HeuristicScorer
from orchard_envs.trainers.credit.labels import LABELS, StepLabel, StepScorer, one_line
from orchard_envs.trainers.credit.steps import Step, parse_steps, task_text

JUDGE_SYSTEM = """\
You review an AI agent's attempt at a task, step by step, and label every numbered step you are asked about:

- good: moves the task forward
- unnecessary: harmless but useless (a repeat, a detour)
- mistake: wrong or harmful (an error, a bad edit, ignoring what an observation said); set "critical": true \
when it derails the attempt, so that the steps after it build on it
- recovery: fixes or works around an earlier mistake

Answer with one JSON object per line, one line per step, and nothing else:
{"step": 3, "label": "mistake", "critical": true, "reason": "one short sentence"}"""
VERDICT = re.compile(r"\{[^{}]*\}")


class JudgeScorer:
    """Asks an agent (any endpoint: `openai`, `vllm`, `hf`) to label the steps, `window` steps per request.

    Each request shows the task, the outcome, the earlier actions in one line each, and the window's steps
    with clipped observations. Replies are parsed leniently (prose and code fences around the JSON lines are
    fine); a step the judge does not label validly gets `fallback`'s label, with a reason that says so. An
    endpoint that fails (unreachable, bad key) raises rather than quietly turning every label heuristic.
    """

    name = "judge"

    def __init__(
        self,
        agent: Agent,
        *,
        window: int = 10,
        observation_chars: int = 1_000,
        task_chars: int = 3_000,
        fallback: StepScorer | None = None,
    ) -> None:
        if window < 1:
            raise ConfigError(f"window must be at least 1 step, not {window}")
        self.agent, self.window = agent, window
        self.observation_chars, self.task_chars = observation_chars, task_chars
        self.fallback = fallback or HeuristicScorer()

    def score(self, episode: Episode) -> list[StepLabel]:
        """One label per assistant message, asking the judge model about `window` steps per request."""
        steps = parse_steps(episode)
        judged: dict[int, StepLabel] = {}
        problems: dict[int, str] = {}
        for start in range(0, len(steps), self.window):
            window = steps[start : start + self.window]
            try:  # a fresh clone per request: no conversation state carries over between requests
                reply = self.agent.clone().act(self.prompt(episode, steps, window), []).content or ""
            except ContextOverflow:
                problems.update(
                    (step.number, "the request did not fit its context window") for step in window
                )
                continue
            found, invalid = _verdicts(reply, {step.number: step.index for step in window})
            judged.update(found)
            problems.update(invalid)
        labels: list[StepLabel] = []
        for step, backup in zip(steps, self.fallback.score(episode), strict=True):
            if step.number in judged:
                labels.append(judged[step.number])
                continue
            why = problems.get(step.number, "no label for this step")
            reason = one_line(f"judge: {why}; heuristic: {backup.reason}", 200)
            labels.append(StepLabel(backup.message_index, backup.label, backup.critical, reason))
        return labels

    def prompt(self, episode: Episode, steps: list[Step], window: list[Step]) -> list[dict[str, Any]]:
        """The judge's messages for one window: task, outcome, earlier steps in brief, then the window."""
        meta = episode.metadata
        outcome = "resolved" if meta.resolved else "not resolved"
        parts = [
            f"Task:\n{clip(task_text(episode), self.task_chars)}",
            f"Outcome: {outcome} (status {meta.status}, reward {meta.reward:g})",
        ]
        earlier = steps[: window[0].number - 1]
        if earlier:
            parts.append(
                "Earlier steps:\n" + "\n".join(f"{s.number}. {one_line(s.action, 160)}" for s in earlier)
            )
        for step in window:
            results = (
                [step.format_error]
                if step.format_error
                else [c.observation or "[not run]" for c in step.calls]
            )
            result = clip("\n".join(results), self.observation_chars)
            parts.append(f"### Step {step.number}\nAction:\n{clip(step.action, 2_000)}\nResult:\n{result}")
        first, last = window[0].number, window[-1].number
        parts.append(f"Label steps {first} to {last}: one JSON line per step.")
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def _verdicts(reply: str, numbers: dict[int, int]) -> tuple[dict[int, StepLabel], dict[int, str]]:
    """The judge's labels by step number (for the steps in `numbers`: step number -> message index), and why
    the steps it mentioned but labelled invalidly were rejected. The first valid label of a step wins."""
    labels: dict[int, StepLabel] = {}
    problems: dict[int, str] = {}
    for match in VERDICT.finditer(reply):
        try:
            item = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        raw = item.get("step")
        step = int(raw) if isinstance(raw, int | str) and str(raw).strip().isdigit() else None
        if step not in numbers or step in labels:
            continue
        label = str(item.get("label", "")).strip().lower()
        if label not in LABELS:
            problems.setdefault(step, f"label {item.get('label')!r} is not one of {', '.join(LABELS)}")
            continue
        critical = label == "mistake" and str(item.get("critical")).strip().lower() in ("true", "1", "yes")
        reason = one_line(f"judge: {item.get('reason') or label}", 200)
        labels[step] = StepLabel(numbers[step], label, critical, reason)  # type: ignore[arg-type]
    return labels, problems
