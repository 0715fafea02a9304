"""`orchard/Web-v0`: browser tasks in a real Chromium (Playwright), on self-hosted sites or MiniWoB++.

One browser per env, launched at the first reset and kept; each episode gets a fresh browser context (no
cookies, storage or cache of an earlier episode) whose requests reach only the task host's loopback
origins (`orchard_envs.web.guard`). The observation is the page's text (URL, tabs, focused element, the
last action's error, blocked navigations and, with `ax_tree=True`, the accessibility tree with stable
bids) and a screenshot of the viewport. An action is a tool call (`orchard_envs.web.actions.web_tools`)
or a BrowserGym action string (`click('12')`); one that cannot be done is an `Error:` line in the next
observation, never an exception. `done(answer)` / `report_infeasible(reason)` end the episode, as does a
MiniWoB page that scores itself; the host grades from the site's state (or the page's reward) and the answer.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from orchard_envs.envs.gui import GuiToolEnv, blank_screen
from orchard_envs.envs.tool_env import find_task
from orchard_envs.envs.tools import ActionError, ToolCall
from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError, SandboxError
from orchard_envs.web import actions
from orchard_envs.web.runtime import Browser, Session, decode_png

SUITE_SCREENS = {"miniwob": (400, 300)}
DEFAULT_SCREEN = (1280, 720)


class WebEnv(GuiToolEnv):
    """A browser task per episode: actions in a real page, graded on the site's state and the answer."""

    ending_tools = actions.ENDING
    max_observation = 200_000
    max_action = 100_000

    def __init__(
        self,
        suite: str = "web-mini",
        split: str | None = None,
        task_ids: list[str] | None = None,
        max_steps: int | None = None,
        screen_size: tuple[int, int] | None = None,
        ax_tree: bool = True,
        action_timeout_ms: int = 2000,
        chromium: str | None = None,
        render_mode: str | None = None,
        prewarm: bool = True,
    ) -> None:
        screen = tuple(screen_size) if screen_size is not None else SUITE_SCREENS.get(suite, DEFAULT_SCREEN)
        super().__init__(max_steps=max_steps, render_mode=render_mode, screen_size=screen)  # type: ignore[arg-type]
        if type(action_timeout_ms) is not int or action_timeout_ms < 1:
            raise ConfigError(f"action_timeout_ms must be a positive whole number, not {action_timeout_ms!r}")
        self.suite, self.ax_tree, self.action_timeout_ms = str(suite), bool(ax_tree), action_timeout_ms
        self.prewarm = bool(prewarm)  # the next episode's context made ahead: -110 ms a reset, +1 renderer
        self.tasks = self._suite_tasks(split)
        if task_ids is not None:
            self.tasks = [self.find_task(task_id) for task_id in task_ids]
        if not self.tasks:
            raise ConfigError(f"suite {suite!r} has no task{f' in split {split!r}' if split else ''}")
        self._browser = Browser(chromium=chromium)
        self._host: Any = None
        self._session: Session | None = None
        self._task: Any = None
        self._frame = blank_screen(self.screen_size)

    def find_task(self, task_id: str) -> Any:
        """The suite's task with this id (a ConfigError naming the closest ids if none)."""
        return find_task(self.tasks, task_id, lambda t: t.task_id, self.suite)

    @property
    def task(self) -> Any:
        """The current task, hidden fields included (for scripted solvers, never the agent)."""
        return self._task

    @property
    def session(self) -> Session | None:
        """The open episode's browser session (tests and scripted solvers read the page through it)."""
        return self._session

    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        task = (
            self.find_task(task_id) if task_id else self.tasks[int(self.np_random.integers(len(self.tasks)))]
        )
        host = self._task_host()
        self._close_session()
        self._browser.wait_closed()  # the last episode's pages are gone before its sites are reset
        url = host.reset(task)
        headers = host.headers() if hasattr(host, "headers") else None  # MiniWoB's pages keep no state
        self._session = self._browser.new_session(
            host.origins(), self.screen_size, self.action_timeout_ms, headers
        )
        self._task, self._tools = task, actions.web_tools()
        instruction = task.instruction
        try:
            self._session.page.goto(url)
            if hasattr(host, "prepare"):
                instruction = host.prepare(task, self._session.page, int(self.np_random.integers(2**31)))
        except Exception as exc:
            raise SandboxError(f"the task page {url} did not load: {exc}") from exc
        text = f"{instruction}\n\n{self._describe(None)}"
        if self.prewarm:  # the next reset's context, made while this episode runs
            self._browser.make_spare(self.screen_size)
        info = {"task": task.to_info(), "timings": {"reset": time.perf_counter() - started}}
        return text, info

    def _parse(self, action: Any, info: dict[str, Any]) -> tuple[ToolCall | None, str]:
        """Also accepts BrowserGym's action strings (`click('12')`), read as the same tool calls."""
        if isinstance(action, str) and not action.lstrip().startswith("{") and len(action) <= self.max_action:
            try:
                action = actions.parse_browsergym(action)
            except ActionError as exc:
                info["tool"], info["error"] = None, "invalid_action"
                return None, f"Error: {exc}"
        return super()._parse(action, info)

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        session = self._open_session()
        if call.name in self.ending_tools:
            self._capture()
            return ""
        error = None
        try:
            actions.run(session, call, self.action_timeout_ms)
        except actions.WebActionError as exc:
            error = str(exc)
        except Exception as exc:  # Playwright's own: a timeout, a detached frame, a closed target
            if not self._browser.connected():
                raise SandboxError(f"the browser died: {exc}") from exc
            error = _playwright_error(exc, self.action_timeout_ms)
        try:
            session.settle()
        except Exception as exc:  # the page is mid-navigation: the next observation shows where it got to
            error = error or _playwright_error(exc, self.action_timeout_ms)
        if error:
            info["error"] = "action_failed"
        return self._describe(error)

    def _task_over(self) -> bool:
        host, session = self._host, self._session
        if session is None or not hasattr(host, "finished"):
            return False
        try:
            return bool(host.finished(session.page))
        except Exception:  # the page navigated away: the task did not end itself
            return False

    def _grade(self, ending_call: ToolCall | None) -> Verdict:
        session = self._open_session()
        started = time.perf_counter()
        arguments = ending_call.arguments if ending_call is not None else {}
        answer = arguments.get("answer") if ending_call is not None and ending_call.name == "done" else None
        reason = arguments.get("reason") if ending_call is not None else None
        verdict = self._host.grade(
            self._task, page_url=session.page.url, answer=answer, infeasible_reason=reason, page=session.page
        )
        verdict.timings.setdefault("grading", time.perf_counter() - started)
        return verdict

    def _end(self) -> None:
        self._close_session()

    def _screenshot(self) -> np.ndarray:
        return self._frame

    def close(self) -> None:
        """Close the episode's context, the browser and the task host."""
        self._close_session()
        self._browser.close()
        if self._host is not None:
            self._host.close()
            self._host = None
        super().close()

    def _suite_tasks(self, split: str | None) -> list[Any]:
        """The suite's tasks (MiniWoB's from the package, the sites' from tasks/web)."""
        if self.suite == "miniwob":
            from orchard_envs.tasks.web.miniwob import load_suite

            return load_suite(split)
        from orchard_envs.tasks.web.catalog import load_suite as load_sites

        return load_sites(self.suite, split)

    def _new_host(self) -> Any:
        """The (unstarted) host that serves and grades this suite's tasks."""
        if self.suite == "miniwob":
            from orchard_envs.tasks.web.miniwob import MiniWobHost

            return MiniWobHost()
        from orchard_envs.tasks.web.host import SiteHost

        return SiteHost()

    def _task_host(self) -> Any:
        if self._host is None:
            self._host = self._new_host().start()
        return self._host

    def _open_session(self) -> Session:
        if self._session is None:
            raise ConfigError("no episode is open: call reset() first")
        return self._session

    def _close_session(self) -> None:
        if self._session is not None:
            self._browser.end_session(self._session)
            self._session = None

    def _describe(self, error: str | None) -> str:
        """The observation's text, and the screenshot taken with it."""
        session = self._open_session()
        lines = [f"Error: {error}"] if error else []
        lines += [f"Blocked: {note}" for note in session.guard.take()]
        text, png = session.observe(self.ax_tree)
        lines.append(text)
        if png is not None:  # else the last frame stays
            self._frame = decode_png(png)
        return "\n".join(lines)

    def _capture(self) -> None:
        with contextlib.suppress(Exception):  # no frame to take (a tab mid-close): keep the last one
            self._frame = decode_png(self._open_session().screenshot_png())


def _playwright_error(exc: BaseException, timeout_ms: int) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if type(exc).__name__ == "TimeoutError":
        return f"the action timed out after {timeout_ms} ms ({text})"
    if "detached" in text.lower() or "closed" in text.lower():
        return f"the element or page went away during the action ({text})"
    return text
