"""`external:NAME`: an agent CLI run as its own process inside the task's sandbox, recorded by the proxy.

The CLI's model calls go to the recording proxy through the sandbox's forwarder (`proxy/relay.py`), the
sandbox's only way out; the proxy answers them with this episode's agent (hf, openai:..., a scripted
server behind openai). When the CLI exits or hits a limit (its wall-clock `timeout`, the proxy's
`max_calls`), the env grades the sandbox's final state with its usual grader (`env.step` of its ending
tool) and the recorded calls become the episode. The runner hands episodes to `run_episode` here.

Statuses: `submitted` (the CLI exited 0; graded), `step_limit` (it ran out of time or calls; graded),
`error` (it crashed or never called the model; not graded; `error` says which).
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

import gymnasium as gym

from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext, end_action
from orchard_envs.episodes import Episode, EpisodeMetadata
from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.harnesses.base import Action, Call, FormatError, Harness
from orchard_envs.harnesses.external_specs import EXTERNAL_HARNESSES
from orchard_envs.harnesses.external_specs.base import TOOL_DIR, CLIHarness
from orchard_envs.harnesses.tool_calling import ToolCallingHarness
from orchard_envs.registry import construct

TASK_FILE = f"{TOOL_DIR}/task.md"
_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def shared_proxy() -> Any:
    """The process's one recording proxy (on a Unix socket), started at first use; episodes share it."""
    from orchard_envs.proxy.server import ProxyServer

    with _shared_lock:
        if "proxy" not in _shared:
            _shared["proxy"] = ProxyServer().start()
            atexit.register(_shared["proxy"].stop)
        return _shared["proxy"]


class ExternalHarness(Harness):
    """Runs a `CLIHarness` in the sandbox; it drives the whole episode (`run_episode`), not turn by turn."""

    name = "external"
    drives_episode = True  # the runner calls run_episode instead of its turn loop

    def __init__(self, cli: str, timeout: float = 1800.0, max_calls: int = 100, **options: Any) -> None:
        super().__init__()
        self.cli: CLIHarness = construct("external harness", EXTERNAL_HARNESSES, cli, **options)
        self.name = f"external:{cli}"
        self.timeout, self.max_calls = float(timeout), int(max_calls)

    # -- the turn-by-turn contract: not how an external harness runs -----------------------------
    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """Refused: the CLI talks to the model itself."""
        raise ConfigError(f"{self.name} runs as its own process: call its run_episode, not the turn loop")

    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError:
        """Refused, as `start`."""
        raise ConfigError(f"{self.name} parses its model's replies itself")

    def observation(self, call: Call, observation: Any) -> dict[str, Any]:
        """Refused, as `start`."""
        raise ConfigError(f"{self.name} shows observations itself")

    def encode(self, action: Action) -> AssistantTurn:
        """As a tool call (what scripted agents answering a CLI's calls speak)."""
        return ToolCallingHarness().encode(action)

    # -- the episode -----------------------------------------------------------------------------
    def run_episode(
        self,
        env: gym.Env,
        agent: Agent,
        *,
        task_id: str | None = None,
        seed: int | None = None,
        trial: int = 0,
    ) -> Episode:
        """Reset, run the CLI in the sandbox against the proxy, grade, record (see the module docstring)."""
        started = time.perf_counter()
        _, info = env.reset(seed=seed, options={"task_id": task_id} if task_id else None)
        task = info.get("task") or {}
        episode_task = task.get("task_id") or task.get("instance_id") or task_id or ""
        names = [tool["function"]["name"] for tool in info["tools"]]
        hidden = getattr(env.unwrapped, "task", None) if getattr(agent, "wants_hidden_task", False) else None
        env_id = env.spec.id if env.spec else type(env.unwrapped).__name__
        agent.start(EpisodeContext(env_id, hidden, names, self.encode, task_id=episode_task, trial=trial))
        outcome = _Outcome()
        try:
            self._play(env, agent, info["instruction"], outcome)
        except ConfigError:
            raise
        except OrchardError as exc:
            outcome.status, outcome.error = "infra_error", f"{type(exc).__name__}: {exc}"
        if outcome.status in ("submitted", "step_limit"):
            _, outcome.reward, _, _, step_info = env.step(end_action(names))
            outcome.verdict = step_info.get("verdict")
        return outcome.episode(self.name, agent, info, env_id, seed, time.perf_counter() - started)

    def _play(self, env: gym.Env, agent: Agent, instruction: str, outcome: _Outcome) -> None:
        from orchard_envs.proxy.relay import SandboxLink
        from orchard_envs.proxy.upstream import AgentUpstream

        sandbox, workdir = _sandbox_of(env)
        before = getattr(env.unwrapped, "_before_step", None)
        if before is not None:
            before()  # the env's own session setup, as a first step would wait for
        proxy = shared_proxy()
        key = proxy.recorder.open(max_calls=self.max_calls, upstream=AgentUpstream(agent))
        link = None
        try:
            self.cli.install(sandbox, workdir)
            sandbox.write_file(TASK_FILE, instruction)
            link = SandboxLink(sandbox, proxy, key, timeout=self.timeout)
            variables = {
                "OPENAI_BASE_URL": link.base_url,
                "OPENAI_API_KEY": "orchard",
                "ORCHARD_TASK_FILE": TASK_FILE,
                "ORCHARD_WORKDIR": workdir,
            }
            result = sandbox.exec(
                self.cli.command(), timeout=self.timeout, cwd=workdir, env=variables, session=False
            )
            outcome.harness_calls = self.cli.harness_calls(sandbox)
        finally:
            if link is not None:
                link.close()
            outcome.refused = proxy.recorder.refused(key)
            outcome.calls = proxy.recorder.close(key)
        outcome.judge(result, self.timeout)


def _sandbox_of(env: gym.Env) -> tuple[Any, str]:
    """The env's open sandbox and the directory a harness works in (SWE: the repository)."""
    unwrapped = env.unwrapped
    sandbox = getattr(unwrapped, "sandbox", None) or getattr(unwrapped, "_sandbox", None)
    if sandbox is None:
        raise ConfigError(f"{type(unwrapped).__name__} has no sandbox for an external harness to run in")
    if type(unwrapped).__name__ == "SWEEnv":
        from orchard_envs.tasks.swe.prepare import REPO_DIR

        return sandbox, REPO_DIR
    return sandbox, sandbox.spec.workdir


class _Outcome:
    """What one external episode came to."""

    def __init__(self) -> None:
        self.status, self.error, self.reward = "error", "", 0.0
        self.calls: list[Any] = []
        self.refused = 0
        self.harness_calls: int | None = None
        self.verdict: Any = None
        self.exit: dict[str, Any] = {}

    def judge(self, result: Any, timeout: float) -> None:
        """The status from how the CLI ended and what it asked the proxy."""
        tail = result.output[-2000:]
        self.exit = {
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "truncated": result.truncated,
        }
        answered = sum(1 for call in self.calls if call.reply is not None)
        if result.timed_out:
            self.status, self.error = "step_limit", f"the harness ran past its timeout of {timeout:g} s"
        elif self.refused:
            self.status, self.error = "step_limit", f"the harness hit the call limit ({self.refused} refused)"
        elif not self.calls:
            self.status = "error"
            self.error = f"the harness never called the model (exit code {result.exit_code}): {tail}"
        elif result.exit_code != 0:
            self.status, self.error = "error", f"the harness exited with code {result.exit_code}: {tail}"
        else:
            self.status = "submitted"
        if answered < len(self.calls):
            failed = next(call.error for call in self.calls if call.reply is None)
            self.error = (
                self.error + f"; {len(self.calls) - answered} model call(s) failed: {failed}"
            ).strip("; ")

    def episode(
        self, harness: str, agent: Agent, info: dict[str, Any], env_id: str, seed: int | None, seconds: float
    ) -> Episode:
        """The episode: the calls' transcript and tokens, the verdict's reward."""
        from orchard_envs.proxy.episode import build_transcript

        transcript = build_transcript(self.calls)
        task = info.get("task") or {}
        verdict = self.verdict
        extras: dict[str, Any] = {
            "verify_status": verdict.status if verdict else None,
            "error": self.error or (verdict.reason if verdict else ""),
            "patch": None,
            **(verdict.episode_extras() if verdict else {}),
            "model_calls": len(self.calls),
            "harness_calls": self.harness_calls,
            "history_rewrites": transcript.rewrites,
            "harness_exit": self.exit,
        }
        if verdict is not None and verdict.suspicious is not None:
            extras["suspicious"] = list(verdict.suspicious)
        tokens = dict(transcript.tokens)
        if transcript.turns:
            tokens["prefix_breaks"] = sum(t.extends_previous is False for t in transcript.turns)
        metadata = EpisodeMetadata(
            env_id=env_id,
            suite=task.get("suite", ""),
            task_id=task.get("task_id") or task.get("instance_id", ""),
            split=task.get("split", ""),
            harness=harness,
            agent=agent.name,
            model=agent.model,
            sampling=dict(agent.sampling),
            seed=seed,
            reward=float(self.reward),
            reward_breakdown=dict(verdict.breakdown) if verdict else {},
            resolved=verdict.resolved if verdict else None,
            status=self.status,
            steps=transcript.answered,
            tokens=tokens,
            timings={"episode": seconds, **(verdict.timings if verdict else {})},
            **extras,
        )
        return Episode(
            messages=transcript.messages, tools=transcript.tools, metadata=metadata, turns=transcript.turns
        )
