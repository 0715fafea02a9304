"""`orchard/Claw-v0`: personal-assistant tool tasks over real HTTP services, graded on state and trace.

Each env owns one service host (a child process running every service on its own loopback port), started
at the first reset and reused: a reset loads the task's fixtures through each service's `/_reset`, so many
envs run side by side without sharing state and a reset costs milliseconds. A step is one tool call sent to
the service over HTTP (or `ask_user` / `finish`, which the env answers itself); malformed calls and the
services' own errors come back as observations, as a real API's would. The episode ends with `finish`, the
task's `max_turns` or its timeout, and is then scored on the services' final state and the call trace.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Literal

import httpx
from pydantic import Field

from orchard_envs.envs.tool_env import ToolEnv, find_task
from orchard_envs.envs.tools import ToolCall
from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError, SandboxError
from orchard_envs.tasks.claw.catalog import TOOLS as CATALOG
from orchard_envs.tasks.claw.catalog import ArgumentError, openai_tools, request_for
from orchard_envs.tasks.claw.checks import evaluate
from orchard_envs.tasks.claw.host import ServiceHost
from orchard_envs.tasks.claw.task import ClawTask, load_suite
from orchard_envs.tasks.claw.user import EndpointUser, SimulatedUser, persona_prompt
from orchard_envs.text import clip

MAX_TEXT = 1_000_000
MAX_OBSERVATION = 20_000


class ClawVerdict(Verdict):
    """Claw's verdict: the common fields plus the scores behind the reward and the call trace."""

    status: Literal["passed", "failed"]
    completion: float
    safety: float
    robustness: float
    components: dict[str, Any] = Field(default_factory=dict)
    answer: str = ""
    trace: list[dict[str, Any]] = Field(default_factory=list)


class ClawEnv(ToolEnv):
    """A personal-assistant request per episode: tool calls hit real mock services; graded on their state."""

    ending_tools = frozenset({"finish"})
    max_observation = MAX_TEXT
    max_action = MAX_TEXT

    def __init__(
        self,
        suite: str = "claw-mini",
        split: str | None = None,
        task_ids: list[str] | None = None,
        max_steps: int | None = None,
        call_timeout: float = 5.0,
        fault_timeout: float = 0.5,
        user_endpoint: dict[str, str] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        if fault_timeout >= call_timeout:
            raise ConfigError("fault_timeout must be shorter than call_timeout, so a timeout fault times out")
        self.suite = str(suite)
        self.tasks = load_suite(suite, split)
        if task_ids is not None:
            self.tasks = [self.find_task(task_id) for task_id in task_ids]
        if not self.tasks:
            raise ConfigError(f"suite {suite!r} has no task{f' in split {split!r}' if split else ''}")
        self.call_timeout, self.fault_timeout = call_timeout, fault_timeout
        self.user_endpoint = dict(user_endpoint) if user_endpoint else None
        self._host: ServiceHost | None = None
        self._http: httpx.Client | None = None
        self._task: ClawTask | None = None
        self._trace: list[dict[str, Any]] = []
        self._user: SimulatedUser | EndpointUser | None = None
        self._deadline = 0.0

    def find_task(self, task_id: str) -> ClawTask:
        """The suite's task with this id (a ConfigError naming the closest ids if none)."""
        return find_task(self.tasks, task_id, lambda t: t.task_id, self.suite)

    @property
    def task(self) -> ClawTask | None:
        """The current task, oracle plan included (for scripted solvers and analysis, never the agent)."""
        return self._task

    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        started = time.perf_counter()
        task = (
            self.find_task(task_id) if task_id else self.tasks[int(self.np_random.integers(len(self.tasks)))]
        )
        host = self._services()
        host.reset(task.fixtures, task.faults)
        self._task, self._trace = task, []
        self._tools = openai_tools(task.tools)
        self._user = self._make_user(task)
        self._deadline = time.monotonic() + task.timeout
        public = {
            "task_id": task.task_id,
            "suite": self.suite,
            "split": task.split,
            "category": task.category,
            "family": task.family,
            "max_turns": task.max_turns,
        }
        return task.prompt, {"task": public, "timings": {"reset": time.perf_counter() - started}}

    def _step_limit(self) -> int | None:
        """The task's `max_turns`, capped by the env's `max_steps` where one is set."""
        assert self._task is not None
        return min(self._task.max_turns, self.max_steps or self._task.max_turns)

    def _out_of_time(self) -> bool:
        return time.monotonic() > self._deadline

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        if call.name == "finish":
            self._trace.append({"tool": "finish", "arguments": call.arguments, "status": 200})
            return "Your reply was sent to the user."
        if call.name == "ask_user":
            return self._ask_user(call)
        return self._call_service(call, info)

    def close(self) -> None:
        """Stop the service host."""
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._host is not None:
            self._host.close()
            self._host = None
        super().close()

    def _fork(self) -> ClawEnv:
        """Its own service host with a copy of every service's state, the trace and the simulated user;
        the clock (`timeout`) keeps running from the original's start."""
        assert self._host is not None
        twin = copy.copy(self)
        twin._host = twin._http = None
        try:
            twin._services().restore(self._host.snapshot())
        except BaseException:
            twin.close()
            raise
        twin._trace = copy.deepcopy(self._trace)
        twin._user = copy.deepcopy(self._user)
        return twin

    def _services(self) -> ServiceHost:
        if self._host is None:
            self._host = ServiceHost().start(timeout_s=self.fault_timeout)
            self._http = httpx.Client(timeout=self.call_timeout)
        return self._host

    def _make_user(self, task: ClawTask) -> SimulatedUser | EndpointUser | None:
        if task.user is None:
            return None
        if self.user_endpoint:
            return EndpointUser(persona=persona_prompt(task.user), **self.user_endpoint)
        return SimulatedUser(task.user)

    def _ask_user(self, call: ToolCall) -> str:
        assert self._user is not None, "ask_user is offered only in tasks with a simulated user"
        answer = self._user.reply(call.arguments["question"])
        self._trace.append({"tool": "ask_user", "arguments": call.arguments, "status": 200, "reply": answer})
        return answer

    def _call_service(self, call: ToolCall, info: dict[str, Any]) -> str:
        assert self._host is not None and self._http is not None
        spec = CATALOG[call.name]
        try:
            method, path, query, body = request_for(spec, call.arguments)
        except ArgumentError as exc:
            info["error"] = "invalid_action"
            return f"Error: {exc}"
        record: dict[str, Any] = {"tool": call.name, "arguments": call.arguments, "service": spec.service}
        self._trace.append(record)
        url = self._host.urls[spec.service] + path
        try:
            response = self._http.request(method, url, params=query or None, json=body)
        except httpx.TimeoutException:
            record["status"] = 504
            info["error"] = "timeout"
            return f"Error: the {spec.service} service did not answer within {self.call_timeout:g} s."
        except httpx.TransportError as exc:
            raise SandboxError(f"the {spec.service} service is down: {exc}") from exc
        record["status"] = response.status_code
        text = _pretty(response)
        if response.is_success:
            return clip(text, MAX_OBSERVATION)
        info["error"] = f"http_{response.status_code}"
        return clip(f"Error {response.status_code}: {text}", MAX_OBSERVATION)

    def _grade(self, ending_call: ToolCall | None) -> ClawVerdict:
        assert self._host is not None and self._task is not None
        answer = ending_call.arguments.get("answer", "") if ending_call is not None else ""
        started = time.perf_counter()
        audits = self._host.audit()
        _attach_faults(self._trace, audits)
        state = {service: audit["state"] for service, audit in audits.items()}
        score = evaluate(self._task, state, self._trace, answer)
        return ClawVerdict(
            status="passed" if score.passed else "failed",
            reward=score.score,
            resolved=score.passed,
            breakdown={
                "completion": score.completion,
                "safety": score.safety,
                "robustness": score.robustness,
            },
            completion=score.completion,
            safety=score.safety,
            robustness=score.robustness,
            components=score.components,
            answer=answer,
            trace=self._trace,
            timings={"grading": time.perf_counter() - started},
        )


def _pretty(response: httpx.Response) -> str:
    try:
        return json.dumps(response.json(), ensure_ascii=False, indent=1)
    except ValueError:
        return response.text


def _attach_faults(trace: list[dict[str, Any]], audits: dict[str, dict[str, Any]]) -> None:
    """Mark each traced service call with the fault the service injected: a service records its calls in
    order, so the k-th traced call to a service is its k-th audited call."""
    seen: dict[str, int] = {}
    for record in trace:
        service = record.get("service")
        if service is None:
            continue
        index = seen[service] = seen.get(service, -1) + 1
        calls = audits.get(service, {}).get("calls", [])
        record["fault"] = calls[index].get("fault") if index < len(calls) else None
