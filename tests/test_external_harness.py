"""`external:NAME` harnesses: an agent CLI in the task's sandbox, its model calls through the recording proxy.

The upstream is a scripted OpenAI-compatible server that replays an instance's gold patch as shell
commands (proxy_helpers.gold_replay_app), driven through the `openai` agent as any served model would be.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
from helpers import serving
from proxy_helpers import gold_replay_app

import orchard_envs.envs  # noqa: F401  (registers the envs)
from orchard_envs.agents.openai_agent import OpenAIAgent
from orchard_envs.harnesses import get_harness
from orchard_envs.harnesses.external import shared_proxy
from orchard_envs.runner import run_episode

HERE = Path(__file__).parent
TINY = "bash /tmp/orchard-harness/tiny.sh"
INSTANCE = "toolz-0.12.1__remove_branch__581f683f"


@pytest.fixture(scope="module")
def gold_url():
    app = gold_replay_app()
    with serving(app) as url:
        yield f"{url}/v1"


@pytest.fixture(params=["local", "docker"])
def swe_env(request):
    request.getfixturevalue(f"{request.param}_backend")  # skips (or fails in CI) without the runtime
    env = gym.make("orchard/SWE-v0", backend=request.param, instance_ids=[INSTANCE])
    yield env
    env.close()


def gold_agent(url: str) -> OpenAIAgent:
    return OpenAIAgent("gold", base_url=url, api_key="unused", return_token_ids=False, logprobs=False)


def command_harness(command: str, **options):
    return get_harness("external:command", command=command, files=str(HERE / "external_harness"), **options)


def test_the_tiny_shell_harness_resolves_an_instance(swe_env, gold_url):
    episode = run_episode(swe_env, command_harness(TINY), gold_agent(gold_url), task_id=INSTANCE)
    meta = episode.metadata
    assert meta.status == "submitted" and meta.resolved and meta.reward == 1.0, meta.model_extra
    assert meta.harness == "external:command" and meta.model_calls == 2
    roles = [m["role"] for m in episode.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]  # as the harness saw them, no rewrites
    assert episode.tools[0]["function"]["name"] == "bash" and meta.history_rewrites == 0


@pytest.mark.parametrize(
    ("command", "status", "said"),
    [
        ("exit 3", "error", "never called the model"),
        ("echo I do nothing", "error", "never called the model"),
        (f"{TINY} && exit 7", "error", "exited with code 7"),
        ("sleep 600", "step_limit", "timeout of 3 s"),
    ],
)
def test_a_failing_harness_ends_its_episode_with_a_clear_status(swe_env, gold_url, command, status, said):
    harness = command_harness(command, timeout=3 if "sleep" in command else 120)
    episode = run_episode(swe_env, harness, gold_agent(gold_url), task_id=INSTANCE)
    meta = episode.metadata
    assert meta.status == status and said in meta.error, (meta.status, meta.error, meta.model_extra)
    # the proxy, the env (its next sandbox) and the next episode keep working
    after = run_episode(swe_env, command_harness(TINY), gold_agent(gold_url), task_id=INSTANCE).metadata
    assert after.status == "submitted" and after.resolved, (after.status, after.error, after.model_extra)


def test_an_output_flood_is_capped_and_the_episode_still_graded(swe_env, gold_url):
    flood = f"head -c 50000000 /dev/zero | tr '\\0' x; {TINY}"
    episode = run_episode(swe_env, command_harness(flood), gold_agent(gold_url), task_id=INSTANCE)
    meta = episode.metadata
    assert meta.status == "submitted" and meta.resolved and meta.harness_exit["truncated"]


def test_a_call_limit_ends_the_episode_as_step_limit_and_grades_it(swe_env, gold_url):
    episode = run_episode(swe_env, command_harness(TINY, max_calls=1), gold_agent(gold_url), task_id=INSTANCE)
    meta = episode.metadata
    # the one allowed call applied the patch; the second was refused, the harness failed, the env graded
    assert meta.status == "step_limit" and meta.resolved and "call limit" in meta.error


def test_unknown_external_harnesses_name_the_known_ones():
    from orchard_envs.errors import ConfigError

    with pytest.raises(ConfigError, match="mini-swe-agent"):
        get_harness("external:mini-swe-agnet")


def test_the_proxy_is_shared_by_episodes():
    assert shared_proxy() is shared_proxy()
