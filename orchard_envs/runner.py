"""The one loop that drives env + harness + agent through an episode; its history is the episode.

Evaluation, data collection and RL rollouts all call `run_episode`. Agent mistakes are observations;
an infrastructure fault or a crash ends the episode with that status, and the episode is still returned.
The agent learns the task id and the trial (its draws differ per trial); the env's hidden task reaches only
agents that declare `wants_hidden_task` (the scripted solvers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from orchard_envs.agents.base import Agent, AssistantTurn, ContextOverflow, EpisodeContext
from orchard_envs.envs.verdict import Verdict
from orchard_envs.episodes import Episode, EpisodeMetadata, TurnTokens
from orchard_envs.episodes.schema import check_messages
from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.harnesses.base import FormatError, Harness


@dataclass(frozen=True)
class TurnPoint:
    """Where an episode stands after a reply's actions ran and it goes on: what `on_turn` hooks see (an
    RL trainer forks `env` here to value the state). `messages` is a copy; `replies` counts the replies."""

    env: gym.Env
    messages: list[dict[str, Any]]
    offered: list[dict[str, Any]]
    replies: int
    task_id: str
    trial: int


OnTurn = Callable[[TurnPoint], None]


def run_episode(
    env: gym.Env,
    harness: Harness,
    agent: Agent,
    *,
    task_id: str | None = None,
    seed: int | None = None,
    trial: int = 0,
    on_turn: OnTurn | None = None,
) -> Episode:
    """One episode. `seed` resets the env; `trial` is which of the task's k samples this is; `on_turn`,
    if given, is called after every reply whose episode goes on."""
    if getattr(harness, "drives_episode", False):  # an agent CLI in the sandbox (harnesses/external.py)
        return harness.run_episode(env, agent, task_id=task_id, seed=seed, trial=trial)  # type: ignore[attr-defined]
    started = time.perf_counter()
    observation, info = env.reset(seed=seed, options={"task_id": task_id} if task_id else None)
    tools = info["tools"]
    harness.check_tools(tools)
    messages, offered = harness.start(info["instruction"], tools)
    messages.extend(harness.opening(observation))
    env_id = _env_id(env)
    episode_task = _task_id(info) or task_id or ""
    _start_agent(agent, env, harness, offered, episode_task, trial)
    state = _Progress()
    _play(env, harness, agent, messages, offered, state, on_turn, (episode_task, trial))
    return state.episode(messages, offered, info, env_id, harness, agent, seed, time.perf_counter() - started)


def continue_episode(
    env: gym.Env, harness: Harness, agent: Agent, point: TurnPoint, *, trial: int
) -> tuple[float, str]:
    """Play on from `point` in `env` (a fork of the env there) with a fresh `agent`: (reward, status).
    The agent draws as trial `trial` of the task; the harness's turn limit counts the earlier replies."""
    messages = [dict(message) for message in point.messages]
    _start_agent(agent, env, harness, point.offered, point.task_id, trial)
    state = _Progress()
    state.replies = point.replies
    _play(env, harness, agent, messages, point.offered, state, None, (point.task_id, trial))
    return float(state.reward), state.status or "error"


def _env_id(env: gym.Env) -> str:
    return env.spec.id if env.spec else type(env.unwrapped).__name__


def _start_agent(
    agent: Agent, env: gym.Env, harness: Harness, offered: list, task_id: str, trial: int
) -> None:
    names = [tool["function"]["name"] for tool in offered]
    hidden = getattr(env.unwrapped, "task", None) if getattr(agent, "wants_hidden_task", False) else None
    agent.start(EpisodeContext(_env_id(env), hidden, names, harness.encode, task_id=task_id, trial=trial))


def _play(
    env: gym.Env,
    harness: Harness,
    agent: Agent,
    messages: list[dict[str, Any]],
    offered: list[dict[str, Any]],
    state: _Progress,
    on_turn: OnTurn | None,
    which: tuple[str, int],
) -> None:
    """The turn loop: until the env ends the episode, a limit cuts it, or something breaks."""
    try:
        while state.status is None:
            if harness.max_turns is not None and state.replies >= harness.max_turns:
                state.status = "turn_limit"  # the harness's own cut: the env is not asked to grade
                break
            turn = agent.act(harness.context(messages), harness.api_tools(offered))
            state.record(turn, messages)
            parsed = harness.parse(turn)
            if isinstance(parsed, FormatError):
                state.format_errors += 1
                messages.append(harness.format_error(parsed))
                if state.format_errors > harness.max_format_errors:
                    state.status = "format_errors"
                continue
            for call in parsed:
                if state.status is not None:  # the episode ended on an earlier call of this turn
                    messages.append(harness.observation(call, "Not run: the episode had ended."))
                    continue
                observation, state.reward, terminated, truncated, state.info = env.step(call.action)
                state.steps += 1
                messages.append(harness.observation(call, observation))
                if terminated or truncated:
                    state.status = "submitted" if terminated else "step_limit"
            if on_turn is not None and state.status is None:
                on_turn(TurnPoint(env, [dict(m) for m in messages], offered, state.replies, *which))
    except ConfigError:
        raise  # a setup mistake of the caller's, not an outcome of the episode
    except ContextOverflow as exc:
        state.status, state.error = "context_limit", str(exc)
    except OrchardError as exc:
        state.status, state.error = "infra_error", f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # the agent or harness crashed: record it rather than lose the episode
        state.status, state.error = "error", f"{type(exc).__name__}: {exc}"


def _task_id(reset_info: dict[str, Any]) -> str:
    """The task's id as the env reports it (SWE names it `instance_id`)."""
    task = reset_info.get("task") or {}
    return task.get("task_id") or task.get("instance_id", "")


def _extends(previous: TurnTokens | None, turn: AssistantTurn) -> bool | None:
    """Checked on the ids themselves, whoever produced them (a local model, a server)."""
    if previous is None or previous.prompt_token_ids is None or turn.prompt_token_ids is None:
        return None
    head = previous.prompt_token_ids + previous.token_ids
    return turn.prompt_token_ids[: len(head)] == head


class _Progress:
    """What the loop accumulates; turned into the episode at the end."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.error = ""
        self.steps = self.format_errors = self.replies = 0
        self.reward = 0.0
        self.info: dict[str, Any] = {}
        self.turns: list[TurnTokens] = []
        self.tokens = {"prompt": 0, "completion": 0}

    def record(self, turn: AssistantTurn, messages: list[dict[str, Any]]) -> None:
        """Appends the reply; one no episode may hold (a tool call without a name, say) ends the episode as
        an `error` that quotes it, instead of failing the whole run when the episode is built."""
        message = turn.message()
        try:
            check_messages([message])
        except ValueError as exc:
            raise ValueError(f"the agent's reply cannot be recorded ({exc}): {repr(message)[:500]}") from None
        self.replies += 1
        messages.append(message)
        if turn.token_ids is not None:
            self.turns.append(
                TurnTokens(
                    message_index=len(messages) - 1,
                    prompt_token_ids=turn.prompt_token_ids,
                    token_ids=turn.token_ids,
                    logprobs=turn.logprobs,
                    finish_reason=turn.finish_reason,
                    extends_previous=_extends(self.turns[-1] if self.turns else None, turn),
                )
            )
        self.tokens["prompt"] += turn.usage.get("prompt_tokens", 0)
        self.tokens["completion"] += turn.usage.get("completion_tokens", 0)

    def token_counts(self) -> dict[str, int]:
        """Usage, plus (where ids were recorded) how many turns' prompts do not extend the previous turn."""
        if not self.turns:
            return dict(self.tokens)
        return {**self.tokens, "prefix_breaks": sum(t.extends_previous is False for t in self.turns)}

    def episode(self, messages, tools, reset_info, env_id, harness, agent, seed, seconds) -> Episode:
        verdict: Verdict | None = self.info.get("verdict")  # the env's typed verdict, on the ending step
        task = reset_info.get("task") or {}
        extras: dict[str, Any] = {
            "verify_status": verdict.status if verdict else None,
            "error": self.error or (verdict.reason if verdict else ""),
            "patch": None,
            **(verdict.episode_extras() if verdict else {}),
        }
        # The grader's doubts about a resolve (SWE's canary and diff scan): kept where the grader checks.
        if verdict is not None and verdict.suspicious is not None:
            extras["suspicious"] = list(verdict.suspicious)
        metadata = EpisodeMetadata(
            env_id=env_id,
            suite=task.get("suite", ""),
            task_id=_task_id(reset_info),
            split=task.get("split", ""),
            harness=harness.name,
            agent=agent.name,
            model=agent.model,
            sampling=dict(agent.sampling),
            seed=seed,
            reward=float(self.reward),
            reward_breakdown=dict(verdict.breakdown) if verdict else {},
            resolved=verdict.resolved if verdict else None,
            status=self.status or "error",
            steps=self.steps,
            format_errors=self.format_errors,
            tokens=self.token_counts(),
            timings={"episode": seconds, **(verdict.timings if verdict else {})},
            **extras,
        )
        return Episode(messages=messages, tools=tools, metadata=metadata, turns=self.turns)
