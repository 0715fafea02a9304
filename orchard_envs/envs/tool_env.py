"""The base every Orchard env builds on: tool calls as actions, one step loop, limits, and a verdict.

An env supplies its tasks, its tools, what a tool call does and its grader (the `_begin`, `_run_tool` and
`_grade` hooks). The base owns the Gymnasium contract around them: reset's options, parsing each action
into a validated tool call (a malformed one is an observation, not an exception), the step limit
(`max_steps`), clipping observations to the declared space, and grading an episode however it ends: an
ending tool (`submit`, `finish`), the step limit, the env's own clock, or a wrapper's truncation
(Gymnasium's `TimeLimit`, graded by `GradeOnTruncation`, which every registered env carries).
"""

from __future__ import annotations

import copy
import difflib
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import gymnasium as gym

from orchard_envs.envs.spaces import AnyText
from orchard_envs.envs.tools import ActionError, ToolCall, copy_tools, parse_action
from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError, unknown_name
from orchard_envs.text import clip

T = TypeVar("T")
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


class ToolEnv(gym.Env[str, str]):
    """An episode is a task: the observation is text, an action is one tool call, the end is graded."""

    metadata = {"render_modes": ["ansi"], "render_fps": 1}
    ending_tools: ClassVar[frozenset[str]] = frozenset()  # a call to one of these ends the episode
    reset_options: ClassVar[frozenset[str]] = frozenset({"task_id"})
    max_observation: ClassVar[int] = 1_000_000  # characters; longer observations are clipped
    max_action: ClassVar[int] = 1_000_000

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each env's constructor refuses unknown option names with the close match (`gym.make` passes
        its keywords straight through, and a bare TypeError names no alternative)."""
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _named_options(cls.__dict__["__init__"], cls.__name__)  # type: ignore[method-assign]

    def __init__(self, *, max_steps: int | None, render_mode: str | None) -> None:
        if render_mode not in (None, "ansi"):
            raise ConfigError(f"render_mode {render_mode!r} is not supported; use 'ansi' or None")
        if max_steps is not None and (type(max_steps) is not int or max_steps < 1):
            raise ConfigError(f"max_steps must be a whole number of at least 1 (or None), not {max_steps!r}")
        self.max_steps, self.render_mode = max_steps, render_mode
        self.observation_space = AnyText(self.max_observation)
        self.action_space = AnyText(self.max_action)
        self._tools: list[dict[str, Any]] = []
        self._steps = 0
        self._done = True
        self._last_observation = ""

    # What each env supplies.
    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        """Start the task (`task_id`, or one drawn with `self.np_random`); set `self._tools`; return the
        instruction and the env's own `info` entries (`task`, `timings`)."""
        raise NotImplementedError

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        """Run one validated call (ending tools included) and return its observation."""
        raise NotImplementedError

    def _grade(self, ending_call: ToolCall | None) -> Verdict:
        """Judge the episode; `ending_call` is the `submit`/`finish` call, or None when it was truncated."""
        raise NotImplementedError

    def _step_limit(self) -> int | None:
        """Steps after which the episode is truncated (and graded)."""
        return self.max_steps

    def _task_over(self) -> bool:
        """The task itself ended after the last call (a MiniWoB page that scored the episode)."""
        return False

    def _out_of_time(self) -> bool:
        """An env with a clock of its own truncates the episode when this turns true."""
        return False

    def _before_step(self) -> None:
        """Wait for anything reset started in the background (SWE's shell session)."""

    def _end(self) -> None:
        """Release what the episode held, once it is graded (or grading failed)."""

    def _observe(self, text: str) -> Any:
        """The observation returned for this (clipped) text: the text itself; GUI envs add a screenshot."""
        return text

    # The contract.
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Start an episode: `options={"task_id": ...}` picks the task, else `seed` draws one."""
        super().reset(seed=seed)
        task_id = self._task_option(options)
        observation, env_info = self._begin(task_id)
        self._steps, self._done = 0, False
        self._last_observation = self._fit(observation)
        info = {"instruction": self._last_observation, "tools": copy_tools(self._tools), **env_info}
        return self._observe(self._last_observation), info

    def step(self, action: str | dict) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Run one tool call; an ending tool or a limit ends the episode, and its verdict rides in `info`."""
        if self._done:
            raise ConfigError("the episode is over or not started: call reset() before step()")
        self._steps += 1
        self._before_step()
        info: dict[str, Any] = {"step": self._steps}
        call, observation = self._parse(action, info)
        if call is not None:
            observation = self._run_tool(call, info)
        terminated = call is not None and (call.name in self.ending_tools or self._task_over())
        limit = self._step_limit()
        truncated = not terminated and ((limit is not None and self._steps >= limit) or self._out_of_time())
        reward = 0.0
        if terminated or truncated:
            verdict = self._conclude(call if terminated else None)
            reward = verdict.reward
            info.update(verdict=verdict, grading=verdict.as_info())
            ended = "Submitted" if terminated else "The episode was cut at its limit"
            observation = observation or f"{ended}. Grading: {verdict.status}. {verdict.reason}".strip()
        self._last_observation = self._fit(observation)
        return self._observe(self._last_observation), reward, terminated, truncated, info

    def truncate(self) -> Verdict:
        """End the open episode because something outside the env cut it (a `TimeLimit`), and grade it."""
        if self._done:
            raise ConfigError("no episode is open: call reset() first")
        return self._conclude(None)

    def fork(self) -> ToolEnv:
        """An independent env at this episode's current state, for per-turn credit (roll continuations out
        from here): stepping the fork leaves this env as it was, and the reverse. Close it when done."""
        if self._done:
            raise ConfigError("fork() needs an open episode: call reset() first, and fork before it ends")
        twin = self._fork()
        twin._steps, twin._done = self._steps, False
        twin._tools, twin._last_observation = copy_tools(self._tools), self._last_observation
        twin._np_random = copy.deepcopy(self._np_random)
        return twin

    def _fork(self) -> ToolEnv:
        """A new env holding its own copy of this episode's state (its own services or sandbox)."""
        raise ConfigError(f"{type(self).__name__} cannot fork its state")

    def render(self) -> str | None:
        """The last observation, in the 'ansi' render mode."""
        return self._last_observation if self.render_mode == "ansi" else None

    def _conclude(self, ending_call: ToolCall | None) -> Verdict:
        try:
            return self._grade(ending_call)
        finally:
            self._done = True
            self._end()

    def _task_option(self, options: dict[str, Any] | None) -> str | None:
        for key in options or {}:
            if key not in self.reset_options:
                raise unknown_name("reset option", str(key), self.reset_options)
        task_id = (options or {}).get("task_id")
        if task_id is not None and not isinstance(task_id, str):
            raise ConfigError(f"the task_id option must be a string, not {type(task_id).__name__}")
        return task_id

    def _parse(self, action: Any, info: dict[str, Any]) -> tuple[ToolCall | None, str]:
        """The validated call, or None and the observation that tells the agent what is wrong."""
        try:
            if isinstance(action, str) and len(action) > self.max_action:
                raise ActionError(f"the action is longer than {self.max_action} characters")
            call = parse_action(action, self._tools)
        except ActionError as exc:
            info["tool"], info["error"] = None, "invalid_action"
            return None, f"Error: {exc}"
        info["tool"] = call.name
        return call, ""

    def _fit(self, observation: str) -> str:
        """Clip to the declared space, so every observation is one the space (and a vector env) holds;
        `clip`'s marker of what was cut is under 100 characters."""
        return clip(observation, self.max_observation - 100)


def find_task(tasks: Sequence[T], task_id: str, id_of: Callable[[T], str], suite: str) -> T:
    """The task with this id, or a ConfigError that names the closest ids."""
    for task in tasks:
        if id_of(task) == task_id:
            return task
    ids = [id_of(task) for task in tasks]
    close = difflib.get_close_matches(task_id, ids, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ConfigError(
        f"no task {task_id!r} in suite {suite!r}{hint} e.g. {', '.join(ids[:3])} ({len(ids)} tasks)"
    )


class GradeOnTruncation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Grades an episode that a wrapper inside this one cut (Gymnasium's `TimeLimit`, which knows nothing of
    grading). Registered on every Orchard env, outermost, so `gym.make(..., max_episode_steps=N)` grades."""

    def __init__(self, env: gym.Env) -> None:
        if not isinstance(env.unwrapped, ToolEnv):
            raise ConfigError(
                f"GradeOnTruncation wraps Orchard tool envs, not {type(env.unwrapped).__name__}"
            )
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Pass the step through; a truncation the env did not grade is graded here."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        if truncated and not terminated and "verdict" not in info:
            verdict = self.env.unwrapped.truncate()  # type: ignore[attr-defined]
            reward, info = verdict.reward, {**info, "verdict": verdict, "grading": verdict.as_info()}
        return observation, reward, terminated, truncated, info


def _named_options(init: Callable[..., None], env_name: str) -> Callable[..., None]:
    signature = inspect.signature(init)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return init
    names = [n for n, p in signature.parameters.items() if n != "self" and p.kind not in VARIADIC]

    @functools.wraps(init)
    def checked(self: ToolEnv, *args: Any, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in names:
                raise unknown_name(f"{env_name} option", key, names)
        init(self, *args, **kwargs)

    return checked
