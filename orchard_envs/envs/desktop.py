"""`orchard/Desktop-v0`: real Debian desktop apps on a real X server, driven with pyautogui, graded by
execution.

Each episode gets a fresh local sandbox (network off, files only in the sandbox) with its own jailed Xvfb,
openbox and the apps the task's OSWorld-style config starts (mousepad, stterm, gnumeric, pcmanfm); see
`orchard_envs.desktop`. An action is one pyautogui-level tool call (OSWorld's `computer_13` names) or, with
`action_space="pyautogui"`, a code string run with nothing but pyautogui in reach. With `prewarm` (the
default) the next episode's desktop (sandbox, X server, window manager) starts when an episode ends, so a
reset pays only for the task's files and apps; a desktop is never reused across episodes. The observation
is the screenshot plus the window list (titles and geometry). The episode ends with `done` or `fail` (or a
limit) and is graded on what the apps left in the sandbox: saved files, spreadsheet cells read by ssconvert
in a fresh sandbox, folder contents; an infeasible task scores 1 only when the agent calls `fail`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from typing import Any, Literal

import numpy as np

from orchard_envs.desktop import actions, restricted
from orchard_envs.desktop.apps import DesktopSession
from orchard_envs.desktop.osworld import evaluate, run_config
from orchard_envs.envs.gui import GuiToolEnv, blank_screen
from orchard_envs.envs.tool_env import find_task
from orchard_envs.envs.tools import ToolCall
from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError
from orchard_envs.tasks.desktop.catalog import load_suite
from orchard_envs.tasks.desktop.task import DesktopTask

ACTION_SPACES = ("computer_13", "pyautogui")


class DesktopVerdict(Verdict):
    """Desktop's verdict: passed or failed, with how the episode ended."""

    status: Literal["passed", "failed"]
    ended_with: str = ""


class DesktopEnv(GuiToolEnv):
    """A desktop task per episode: pyautogui input on real apps in a sandbox; graded on their files."""

    ending_tools = frozenset({"done", "fail"})
    max_observation = 100_000
    max_action = 100_000

    def __init__(
        self,
        suite: str = "desktop-mini",
        split: str | None = None,
        task_ids: list[str] | None = None,
        max_steps: int | None = None,
        action_space: str = "computer_13",
        screen_size: tuple[int, int] = (1024, 768),
        settle: float = 0.3,
        memory: str = "2g",
        prewarm: bool = True,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode, screen_size=tuple(screen_size))
        if action_space not in ACTION_SPACES:
            raise ConfigError(f"action_space must be one of {', '.join(ACTION_SPACES)}, not {action_space!r}")
        self.suite, self.tool_set, self.settle, self.memory = str(suite), action_space, settle, memory
        self.prewarm = prewarm
        self._next: concurrent.futures.Future[DesktopSession] | None = None
        self._starter: concurrent.futures.ThreadPoolExecutor | None = None
        self.tasks = load_suite(suite, split)
        if task_ids is not None:
            self.tasks = [self.find_task(task_id) for task_id in task_ids]
        if not self.tasks:
            raise ConfigError(f"suite {suite!r} has no task{f' in split {split!r}' if split else ''}")
        self._backend: Any = None
        self._session: DesktopSession | None = None
        self._task: DesktopTask | None = None
        self._last_shot = blank_screen(self.screen_size)

    def find_task(self, task_id: str) -> DesktopTask:
        """The suite's task with this id (a ConfigError naming the closest ids if none)."""
        return find_task(self.tasks, task_id, lambda t: t.task_id, self.suite)

    @property
    def task(self) -> DesktopTask | None:
        """The current task, oracle plan included (for scripted solvers, never the agent)."""
        return self._task

    @property
    def session(self) -> DesktopSession | None:
        """The open episode's desktop (sandbox, display, apps), for tests and benchmarks."""
        return self._session

    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        task = (
            self.find_task(task_id) if task_id else self.tasks[int(self.np_random.integers(len(self.tasks)))]
        )
        self._close_session()
        self._session = self._take_desktop()
        desktop = time.perf_counter()
        run_config(list(task.config), self._session)
        self._wait_until_drawn()
        self._task = task
        width, height = self.screen_size
        self._tools = (
            actions.computer_tools(width, height) if self.tool_set == "computer_13" else actions.code_tools()
        )
        text = f"{task.instruction}\n\n{self._window_text()}"
        timings = {"desktop": desktop - started, "reset": time.perf_counter() - started}
        return text, {"task": task.to_info(), "timings": timings}

    def _new_desktop(self) -> DesktopSession:
        if self._backend is None:
            from orchard_envs.sandbox import get_backend

            self._backend = get_backend("local")
        width, height = self.screen_size
        return DesktopSession(self._backend, width, height, self.memory)

    def _take_desktop(self) -> DesktopSession:
        """A fresh desktop: the one started in the background when the last episode ended, else a new
        one. Never a used one: an episode's processes and X state must not reach the next episode."""
        ahead, self._next = self._next, None
        if ahead is not None:
            try:
                return ahead.result()
            except Exception:  # a failed background start is retried here, where its error is seen
                pass
        return self._new_desktop()

    def _start_next(self) -> None:
        if not self.prewarm or self._next is not None:
            return
        if self._starter is None:
            self._starter = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orchard-desktop")
        self._next = self._starter.submit(self._new_desktop)

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        assert self._session is not None and self._session.display is not None
        if call.name in self.ending_tools:
            return "Task marked done." if call.name == "done" else "Task marked infeasible."
        if call.name == "wait":
            time.sleep(actions.clamp_wait(call.arguments.get("seconds")))
            return self._window_text()
        try:
            if call.name == "run_code":
                result = restricted.run_code(self._session.display.socket_dir, call.arguments["code"])
            else:
                actions.perform(self._session.display, call)
                result = ""
        except (actions.ActionRefused, restricted.CodeRefused) as exc:
            info["error"] = "invalid_action"
            return f"Error: {exc}\n\n{self._window_text()}"
        time.sleep(self.settle)
        if result.startswith("Error"):
            info["error"] = "code_error"
        return f"{result}\n\n{self._window_text()}".lstrip()

    def _wait_until_drawn(self, timeout: float = 5.0) -> None:
        """Apps map their windows before they paint them: the first observation waits until two screenshots
        0.15 s apart are the same (or `timeout` passes), so it shows what the agent will act on."""
        assert self._session is not None and self._session.display is not None
        deadline = time.monotonic() + timeout
        previous = self._session.display.screenshot()
        while time.monotonic() < deadline:
            time.sleep(0.15)
            current = self._session.display.screenshot()
            if np.array_equal(current, previous):
                return
            previous = current

    def _window_text(self) -> str:
        assert self._session is not None
        lines = [w.line(i) for i, w in enumerate(self._session.windows(), start=1)]
        return "Windows (x, y: top left of the window's content on the screen):\n" + (
            "\n".join(lines) or "(none)"
        )

    def _screenshot(self) -> np.ndarray:
        if self._session is not None and self._session.display is not None and self._session.display.alive():
            self._last_shot = self._session.display.screenshot()
        return self._last_shot

    def _grade(self, ending_call: ToolCall | None) -> DesktopVerdict:
        assert self._session is not None and self._task is not None
        started = time.perf_counter()
        failed = ending_call is not None and ending_call.name == "fail"
        score, reason = evaluate(dict(self._task.evaluator), self._session, self._backend, failed)
        return DesktopVerdict(
            status="passed" if score >= 1.0 else "failed",
            reward=score,
            resolved=score >= 1.0,
            reason=reason,
            ended_with=ending_call.name if ending_call is not None else "limit",
            timings={"grading": time.perf_counter() - started},
        )

    def _end(self) -> None:
        self._screenshot()  # the last observation shows the screen as the episode left it
        self._close_session()
        self._start_next()  # the next episode's desktop starts while the agent's side records this one

    def _close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def close(self) -> None:
        """Stop the episode's desktop and sandbox, and the one started ahead."""
        self._close_session()
        ahead, self._next = self._next, None
        if ahead is not None:
            with contextlib.suppress(Exception):
                ahead.result().close()
        if self._starter is not None:
            self._starter.shutdown(wait=True)
            self._starter = None
        super().close()
