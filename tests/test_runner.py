"""The runner with every harness and the scripted agents on orchard/SWE-v0 (real local sandboxes)."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest
from helpers import assert_round_trips

from orchard_envs.agents import get_agent
from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext
from orchard_envs.episodes import EpisodeWriter, read_episodes
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode
from orchard_envs.tasks.swe.instance import load_suite

TASK = next(i for i in load_suite("swe-mini") if i.repo == "parse")
HARNESSES = ["tool-calling", "react", "bash-only"]


@pytest.fixture(scope="module")
def env(local_backend):
    environment = gym.make("orchard/SWE-v0", backend=local_backend, max_steps=8)
    yield environment
    environment.close()


@pytest.mark.parametrize("harness", HARNESSES)
@pytest.mark.parametrize("agent, reward", [("oracle", 1.0), ("noop", 0.0)])
def test_every_harness_runs_the_scripted_agents(env, harness, agent, reward, tmp_path):
    episode = run_episode(env, get_harness(harness), get_agent(agent), task_id=TASK.instance_id, seed=1)
    meta = episode.metadata
    assert (meta.reward, meta.status, meta.resolved) == (reward, "submitted", reward == 1.0)
    assert (meta.harness, meta.agent, meta.task_id, meta.env_id) == (
        harness,
        agent,
        TASK.instance_id,
        env.spec.id,
    )
    assert meta.steps >= 1 and meta.format_errors == 0 and meta.seed == 1
    assert bool(meta.patch) == (agent == "oracle")  # the graded diff rides along, for SWE-bench predictions
    assert episode.messages[0]["role"] == "system" and episode.messages[1]["role"] == "user"
    assert_round_trips(episode, tmp_path)


def test_replay_reproduces_a_recorded_episode(env, tmp_path):
    harness = get_harness("tool-calling")
    first = run_episode(env, harness, get_agent("oracle"), task_id=TASK.instance_id)
    path = tmp_path / "oracle.jsonl"
    with EpisodeWriter(path) as writer:
        writer.write(first)
    again = run_episode(env, harness, get_agent("replay", path=str(path)), task_id=TASK.instance_id)
    assert again.metadata.reward == 1.0
    recorded = [m for m in first.messages if m["role"] == "assistant"]
    assert [m for m in again.messages if m["role"] == "assistant"] == recorded


def test_random_agent_fuzzes_without_crashing(env):
    episode = run_episode(env, get_harness("react"), get_agent("random", seed=5), task_id=TASK.instance_id)
    assert episode.metadata.status == "submitted" and episode.metadata.reward == 0.0


class Babbler(Agent):
    """Never produces an action."""

    name = "babbler"

    def act(self, messages, tools):
        return AssistantTurn(
            content="I think I should look around.", usage={"prompt_tokens": 3, "completion_tokens": 2}
        )


@pytest.mark.parametrize("harness", HARNESSES)
def test_malformed_replies_are_counted_and_end_the_episode_at_the_limit(env, harness):
    episode = run_episode(env, get_harness(harness, max_format_errors=2), Babbler(), task_id=TASK.instance_id)
    meta = episode.metadata
    assert (meta.status, meta.format_errors, meta.steps, meta.reward) == ("format_errors", 3, 0, 0.0)
    assert meta.tokens == {"prompt": 9, "completion": 6}
    errors = [m for m in episode.messages if m["role"] == "user" and m["content"].startswith("Format error")]
    assert len(errors) == 3


class SubmitThenTalk(Agent):
    name = "eager"

    def act(self, messages, tools):
        calls = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
            for i, n in enumerate(["submit", "submit"])
        ]
        return AssistantTurn(tool_calls=calls)


def test_calls_after_the_end_are_answered_not_run(env):
    episode = run_episode(env, get_harness("tool-calling"), SubmitThenTalk(), task_id=TASK.instance_id)
    tool_messages = [m for m in episode.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["c0", "c1"]
    assert tool_messages[1]["content"].startswith("Not run") and episode.metadata.steps == 1


class Crasher(Agent):
    name = "crasher"

    def act(self, messages, tools):
        raise RuntimeError("model server went away")


def test_a_crashing_agent_still_yields_an_episode(env):
    episode = run_episode(env, get_harness("tool-calling"), Crasher(), task_id=TASK.instance_id)
    assert episode.metadata.status == "error" and "model server went away" in episode.metadata.error


class Nameless(Agent):
    name = "nameless"

    def act(self, messages, tools):
        call = {"id": "c0", "type": "function", "function": {"name": "", "arguments": "{}"}}
        return AssistantTurn(content=None, tool_calls=[call])


def test_a_reply_no_episode_may_hold_ends_the_episode_as_an_error(env):
    """It used to escape from run_episode (the episode failed validation) and stop a whole bench run."""
    episode = run_episode(env, get_harness("tool-calling"), Nameless(), task_id=TASK.instance_id)
    assert episode.metadata.status == "error"
    assert "cannot be recorded" in episode.metadata.error and "function.name" in episode.metadata.error
    assert [m["role"] for m in episode.messages] == ["system", "user"]


def test_bash_only_refuses_an_env_without_bash():
    tools = [{"type": "function", "function": {"name": "click", "parameters": {}}}]
    with pytest.raises(ConfigError, match="needs an env with 'bash' and 'submit'"):
        get_harness("bash-only").check_tools(tools)


def test_unknown_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'tool-calling'"):
        get_harness("tool_calling")
    with pytest.raises(ConfigError, match="did you mean 'oracle'"):
        get_agent("oracel")


class Saboteur(Agent):
    """Kills the sandbox under the env, then asks for a command: an infrastructure fault mid-episode."""

    name = "saboteur"

    def __init__(self, env) -> None:
        self.env = env

    def act(self, messages, tools):
        self.env.unwrapped._session_ready.result()  # let the shell come up first, then pull the plug
        self.env.unwrapped._sandbox.close()
        call = {
            "id": "c0",
            "type": "function",
            "function": {"name": "bash", "arguments": '{"command": "ls"}'},
        }
        return AssistantTurn(tool_calls=[call])


def test_an_infrastructure_fault_ends_the_episode_as_infra_error(local_backend):
    with gym.make("orchard/SWE-v0", backend=local_backend) as env:
        episode = run_episode(env, get_harness("tool-calling"), Saboteur(env), task_id=TASK.instance_id)
    assert episode.metadata.status == "infra_error" and "Sandbox" in episode.metadata.error
    assert episode.messages[-1]["role"] == "assistant"  # the call that met the fault is kept


class Looker(Agent):
    """Runs `cat` on a big file a few times, then submits; keeps what it was shown each turn."""

    name = "looker"

    def __init__(self) -> None:
        self.seen: list[list[dict]] = []

    def act(self, messages, tools):
        self.seen.append(messages)
        if len(self.seen) > 3:
            return AssistantTurn(content="```bash\necho ORCHARD_SUBMIT\n```")
        return AssistantTurn(content="```bash\nseq 1 3000\n```")


def test_old_observations_are_elided_when_the_context_outgrows_the_window(env):
    agent = Looker()
    harness = get_harness("bash-only", context_chars=30_000, keep_recent=2)
    episode = run_episode(env, harness, agent, task_id=TASK.instance_id)
    assert episode.metadata.status == "submitted"
    outputs = [m for m in episode.messages if m["role"] == "user" and m["content"].startswith("Output:")]
    assert len(outputs) == 4 and all("2999" in m["content"] for m in outputs[:3])  # the record keeps all
    last_view = agent.seen[-1]
    assert last_view[:2] == episode.messages[:2]  # the system prompt and the task always stay
    assert "elided to fit the context window" in last_view[3]["content"]
    assert last_view[-2:] == episode.messages[len(last_view) - 2 : len(last_view)]  # the recent ones stay
    assert sum(len(str(m["content"])) for m in last_view) <= 30_000


def test_swe_run_cli_records_episodes_and_refuses_bad_options(tmp_path):
    out = tmp_path / "episodes.jsonl"
    run = [sys.executable, "-m", "orchard_envs.tasks.cli", "swe", "run", "--out", str(out), "--agent", "noop"]
    done = subprocess.run([*run, "--task", TASK.instance_id], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "noop via tool-calling: 0/1 resolved" in done.stdout
    (episode,) = read_episodes(out)
    assert episode.metadata.task_id == TASK.instance_id
    for extra, expected in [
        (["--option", "speed"], "is not key=value"),
        (["--option", "speed=1"], "agent 'noop': got an unexpected keyword argument 'speed'"),
        (["--task", "no-such-task"], "no instance 'no-such-task'"),
        (["--agent", "orcale"], "did you mean 'oracle'?"),
    ]:
        failed = subprocess.run([*run, *extra], capture_output=True, text=True, timeout=120)
        assert failed.returncode == 2 and expected in failed.stderr and "Traceback" not in failed.stderr


def test_the_harness_turn_limit_cuts_a_babbling_episode(env):
    harness = get_harness("react", max_turns=2, max_format_errors=10)
    episode = run_episode(env, harness, Babbler(), task_id=TASK.instance_id)
    meta = episode.metadata
    assert (meta.status, meta.format_errors, meta.steps) == ("turn_limit", 2, 0)  # not the env's graded cut
    with pytest.raises(ConfigError, match="max_turns must be at least 1"):
        get_harness("react", max_turns=0)


class Peeker(Agent):
    """A user's agent that would read the gold patch if the runner handed it over."""

    name = "peeker"

    def __init__(self) -> None:
        self.contexts: list[EpisodeContext] = []

    def start(self, context: EpisodeContext) -> None:
        self.contexts.append(context)

    def act(self, messages, tools):
        task = self.contexts[-1].task
        patch = getattr(task, "patch", None) or ""
        return AssistantTurn(content=f"```bash\n{patch[:200]}\n```")


def test_a_user_agent_gets_no_hidden_task_only_scripted_solvers_declare_it(env):
    peeker = Peeker()
    harness = get_harness("bash-only", max_turns=1)
    run_episode(env, harness, peeker, task_id=TASK.instance_id, trial=3)
    (context,) = peeker.contexts
    assert context.task is None and env.unwrapped.task.patch  # the env holds the gold patch; not handed
    assert (context.task_id, context.trial, context.env_id) == (TASK.instance_id, 3, env.spec.id)
    assert get_agent("oracle").wants_hidden_task and not peeker.wants_hidden_task
    assert not get_agent("noop").wants_hidden_task and not get_agent("random").wants_hidden_task


class ExitingPatcher(Agent):
    """Adds a forgery's tool (`os._exit`) to the library, then submits: the grader's doubt must reach
    the recorded episode, where orchard-bench counts it and the RL trainer withholds the reward."""

    name = "exiting-patcher"

    def start(self, context: EpisodeContext) -> None:
        self.encode, self.turn = context.encode, 0

    def act(self, messages, tools):
        self.turn += 1
        if self.turn == 1:
            command = "f=$(git ls-files '*.py' | grep -v test | head -1) && echo 'import os; os._exit' >> $f"
            return self.encode({"name": "bash", "arguments": {"command": command}})
        return self.encode({"name": "submit", "arguments": {}})


def test_the_graders_doubts_reach_the_recorded_episode(env, tmp_path):
    episode = run_episode(env, get_harness("tool-calling"), ExitingPatcher(), task_id=TASK.instance_id)
    reasons = episode.metadata.model_extra["suspicious"]
    assert any("os._exit" in reason for reason in reasons), reasons
    assert_round_trips(episode, tmp_path)
