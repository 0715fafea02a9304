"""`orchard/SWE-v0`: fix a bug in a real repository inside a sandbox; graded by the repository's tests.

Observations are text (the instruction, then each tool's output); everything structured rides in `info`.
Actions are tool calls: `bash` (one persistent shell session), `str_replace_editor`, and `submit`.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from orchard_envs.envs.editor import Editor, ToolError
from orchard_envs.envs.tool_env import ToolEnv, find_task
from orchard_envs.envs.tools import ToolCall, function_tool
from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.registry import check_options
from orchard_envs.sandbox import BACKENDS, Backend, Sandbox, get_backend
from orchard_envs.tasks.swe.grading import (
    GradeResult,
    TestRun,
    UnusableDiff,
    extract_patch,
    grade,
    grading_spec,
    unusable_result,
)
from orchard_envs.tasks.swe.instance import SWEInstance, load_suite
from orchard_envs.tasks.swe.prepare import REPO_DIR, PreparedTree, prepare, sandbox_spec
from orchard_envs.tasks.swe.report import TestsReport
from orchard_envs.tasks.swe.swebench_io import attach_local_repos, describe_missing
from orchard_envs.text import clip

MAX_OBSERVATION = 1_000_000
MAX_ACTION = 1_000_000
MAX_TOOL_OUTPUT = 30_000  # characters of bash output kept in the observation (head and tail)

TOOLS = [
    function_tool(
        "bash",
        "Run a bash command in a persistent shell session (the working directory and variables persist). "
        f"The repository is at {REPO_DIR}. There is no network.",
        {"command": {"type": "string", "description": "The command to run."}},
        ["command"],
    ),
    function_tool(
        "str_replace_editor",
        "View, create and edit files. view: a file with line numbers (view_range [start, end], end -1 for "
        "the rest) or a directory two levels deep. create: a new file with file_text. str_replace: replace "
        "old_str, which must occur exactly once, with new_str. insert: new_str after line insert_line "
        "(0 for the top). undo_edit: revert the last edit of path.",
        {
            "command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"]},
            "path": {"type": "string", "description": f"Absolute path, or relative to {REPO_DIR}."},
            "file_text": {"type": "string"},
            "old_str": {"type": "string"},
            "new_str": {"type": "string"},
            "insert_line": {"type": "integer"},
            "view_range": {"type": "array", "items": {"type": "integer"}},
        },
        ["command", "path"],
    ),
    function_tool("submit", "Submit your changes to the repository for grading; ends the episode.", {}, []),
]

INSTRUCTION = """\
<problem_statement>
{problem}
</problem_statement>

The repository `{repo}` is checked out at {repo_dir} (a git repository at its base commit). Change its \
non-test source files so that the problem above is fixed; changes to tests and test configuration are \
discarded before grading. Use the tools to explore, edit and run the tests (`python -m pytest`), then call \
`submit`."""


class SWEVerdict(Verdict):
    """SWE's verdict: the common fields plus the grader's record (the diff, the tests, the canary)."""

    status: Literal["resolved", "unresolved", "error"]
    suspicious: list[str] = Field(default_factory=list)  # SWE always checks (canary, diff scan)
    tests: TestsReport | None = None
    patch: str = Field("", description="the agent's whole diff against the base commit")
    graded_patch: str = Field("", description="what was applied for grading: the diff minus protected files")
    dropped_files: list[str] = Field(default_factory=list, description="protected files the diff touched")
    canary: str = Field("", description="node id of the test added at grading time that must fail")
    test_run: TestRun | None = None

    @classmethod
    def of(cls, result: GradeResult) -> SWEVerdict:
        """The env's verdict from the grader's result."""
        fields = result.model_dump()
        return cls(**fields, resolved=result.status == "resolved", breakdown={"tests": result.reward})

    def episode_extras(self) -> dict[str, Any]:
        """The graded diff rides along in the episode, for SWE-bench predictions."""
        return {"patch": self.patch}


class SWEEnv(ToolEnv):
    """A SWE-bench-style task per episode: reset prepares a sandbox, submit (or the step limit) grades it."""

    ending_tools = frozenset({"submit"})
    max_observation = MAX_OBSERVATION
    max_action = MAX_ACTION

    def __init__(
        self,
        suite: str = "swe-mini",
        split: str | None = None,
        backend: str | Backend = "local",
        backend_options: dict[str, Any] | None = None,
        instance_ids: list[str] | None = None,
        repos_dir: str | None = None,
        max_steps: int = 50,
        command_timeout: float = 120.0,
        test_timeout: float = 300.0,
        sandbox_options: dict[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        if isinstance(backend, str):  # refused now, with the close match, not at the first reset
            check_options("sandbox backend", BACKENDS, backend, **dict(backend_options or {}))
        self.suite = str(suite)
        self.instances = load_suite(suite, split)
        if repos_dir is not None:
            self.instances = attach_local_repos(self.instances, Path(repos_dir))
        if instance_ids is not None:
            self.instances = [self.find_task(task_id) for task_id in instance_ids]
        self._runnable = [i for i in self.instances if i.runnable]
        if not self._runnable:
            raise ConfigError(describe_missing(self.instances) or "the suite has no runnable instance")
        if len(self._runnable) < len(self.instances):
            warnings.warn(f"{describe_missing(self.instances)} Those are skipped.", stacklevel=2)
        self.command_timeout, self.test_timeout = command_timeout, test_timeout
        self.sandbox_options = dict(sandbox_options or {})
        self._backend_choice, self._backend_options = backend, dict(backend_options or {})
        self._backend: Backend | None = backend if isinstance(backend, Backend) else None
        self._owns_backend = not isinstance(backend, Backend)
        self._sandbox: Sandbox | None = None
        # Sandbox creation and teardown happen off the step path: the grading sandbox is made while the
        # agent works, and finished sandboxes are closed in the background.
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swe-env")
        self._grading_sandbox: Future[Sandbox] | None = None
        self._session_ready: Future | None = None
        self._editor: Editor | None = None
        self._task: SWEInstance | None = None
        self._tree: PreparedTree | None = None

    def find_task(self, task_id: str) -> SWEInstance:
        """The suite's instance with this id (a ConfigError naming the closest ids if none)."""
        return find_task(self.instances, task_id, lambda i: i.instance_id, self.suite)

    @property
    def backend(self) -> Backend:
        """The sandbox backend, constructed at first use."""
        if self._backend is None:
            self._backend = get_backend(str(self._backend_choice), **self._backend_options)
        return self._backend

    @property
    def task(self) -> SWEInstance | None:
        """The current instance, gold patch included (for oracles and analysis, never shown to the agent)."""
        return self._task

    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        if task_id is not None:
            task = self.find_task(task_id)
            if not task.runnable:
                raise ConfigError(describe_missing([task]) or f"task {task_id} cannot run here")
        else:
            task = self._runnable[int(self.np_random.integers(len(self._runnable)))]
        self._close_sandbox()
        tree = prepare(task)
        prepared = time.perf_counter()
        sandbox = self.backend.create(sandbox_spec(tree, **self.sandbox_options))
        self._sandbox, self._editor, self._task, self._tree = sandbox, Editor(sandbox, REPO_DIR), task, tree
        # The shell session starts while the agent reads the instruction; the first step waits for it.
        self._session_ready = self._background.submit(sandbox.exec, f"cd {REPO_DIR}")
        self._grading_sandbox = self._background.submit(self._make_grading_sandbox, tree)
        self._tools = TOOLS
        instruction = INSTRUCTION.format(
            problem=task.problem_statement.strip(), repo=task.repo, repo_dir=REPO_DIR
        )
        return instruction, {
            "task": {**task.public_metadata(), "task_id": task.instance_id, "suite": self.suite},
            "timings": {"prepare": prepared - started, "reset": time.perf_counter() - started},
        }

    def _before_step(self) -> None:
        if self._session_ready is not None:
            self._session_ready.result()  # an infrastructure fault here raises, as it would have in reset
            self._session_ready = None

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        assert self._sandbox is not None and self._editor is not None
        if call.name == "submit":
            return ""
        if call.name == "bash":
            result = self._sandbox.exec(call.arguments["command"], timeout=self.command_timeout)
            info["exit_code"] = result.exit_code
            note = f"\n[timed out after {self.command_timeout:g} s]" if result.timed_out else ""
            note += f"\n[exit code {result.exit_code}]" if result.exit_code else ""
            return clip(result.output, MAX_TOOL_OUTPUT) + note
        try:
            return self._editor.run(**call.arguments)
        except ToolError as exc:
            info["error"] = "tool_error"
            return f"Error: {exc}"

    def _grade(self, ending_call: ToolCall | None) -> SWEVerdict:
        assert self._sandbox is not None and self._task is not None and self._tree is not None
        started = time.perf_counter()
        try:
            patch = extract_patch(self._sandbox, self._tree.head)
        except UnusableDiff as exc:  # the agent's doing (a huge log in the repository, say): not retried
            return SWEVerdict.of(unusable_result(exc))
        result = grade(
            self.backend,
            self._tree,
            self._task,
            patch,
            timeout=self.test_timeout,
            sandbox=self._take_grading_sandbox(),
            **self.sandbox_options,
        )
        result.timings["extract"] = time.perf_counter() - started - result.timings.get("total", 0.0)
        return SWEVerdict.of(result)

    def _end(self) -> None:
        self._close_sandbox()

    def _fork(self) -> SWEEnv:
        """A fork of the sandbox (files and processes' effects, not the shell's cwd or variables: the fork's
        shell starts fresh in the repository), its own grading sandbox and editor history. It shares the
        backend, so close the fork before the original env."""
        assert self._sandbox is not None and self._editor is not None and self._tree is not None
        self._before_step()
        twin = copy.copy(self)
        twin._owns_backend = False
        twin._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="swe-env")
        twin._sandbox = self._sandbox.fork()
        twin._editor = Editor(twin._sandbox, REPO_DIR)
        twin._editor._history = copy.deepcopy(self._editor._history)
        twin._session_ready = twin._background.submit(twin._sandbox.exec, f"cd {REPO_DIR}")
        twin._grading_sandbox = twin._background.submit(twin._make_grading_sandbox, self._tree)
        return twin

    def _make_grading_sandbox(self, tree: PreparedTree) -> Sandbox:
        sandbox = self.backend.create(grading_spec(tree, **self.sandbox_options))
        sandbox.warm()  # its shell session starts now, not when the tests run
        return sandbox

    def _take_grading_sandbox(self) -> Sandbox | None:
        """The sandbox made at reset, if it came up and is still alive; else grading makes a new one."""
        future, self._grading_sandbox = self._grading_sandbox, None
        try:
            sandbox = future.result() if future is not None else None
            if sandbox is not None:
                sandbox.exec("true", timeout=30)
            return sandbox
        except OrchardError:  # e.g. reaped after its TTL during a long episode
            return None

    def _close_sandbox(self, wait: bool = False) -> None:
        doomed: list[Future] = []
        if self._sandbox is not None:
            doomed.append(self._background.submit(self._sandbox.close))
        if self._grading_sandbox is not None:
            doomed.append(self._background.submit(_close_when_made, self._grading_sandbox))
        self._sandbox = self._editor = None
        self._grading_sandbox = self._session_ready = None
        for future in doomed if wait else ():
            future.result()

    def close(self) -> None:
        """Close the sandboxes, the background threads and a backend the env made itself."""
        self._close_sandbox(wait=True)
        self._background.shutdown(wait=True)
        if self._owns_backend and self._backend is not None:
            self._backend.close()
            self._backend = None
        super().close()


def _close_when_made(future: Future[Sandbox]) -> None:
    with contextlib.suppress(OrchardError):  # one that never came up needs no closing
        future.result().close()
