"""Attacks from inside an external harness's sandbox: the forwarder to the proxy is its only way out, and
another episode's key (even leaked to it) neither attributes its calls there nor reads that episode's."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
from helpers import serving
from proxy_helpers import gold_replay_app

import orchard_envs.envs  # noqa: F401  (registers the envs)
from orchard_envs.agents.base import Agent, AssistantTurn
from orchard_envs.harnesses import get_harness
from orchard_envs.harnesses.external import shared_proxy
from orchard_envs.runner import run_episode

HERE = Path(__file__).parent
INSTANCE = "toolz-0.12.1__remove_branch__581f683f"


class Echo(Agent):
    """Answers every call with 'ok'."""

    name = "echo"

    def act(self, messages, tools):
        return AssistantTurn(content="ok")


@pytest.fixture(params=["local", "docker"])
def swe_env(request):
    request.getfixturevalue(f"{request.param}_backend")
    env = gym.make("orchard/SWE-v0", backend=request.param, instance_ids=[INSTANCE])
    yield env
    env.close()


def test_the_sandbox_reaches_only_its_own_episode_through_the_proxy(swe_env):
    proxy = shared_proxy()
    other = proxy.recorder.open()  # another episode, whose key the attacker somehow learnt
    try:
        with serving(gold_replay_app()) as url:  # a server on the host's loopback
            port = int(url.rsplit(":", 1)[1])
            command = f"python3 /tmp/orchard-harness/attack.py {port} {proxy.socket_path} {other}"
            harness = get_harness("external:command", command=command, files=str(HERE / "external_harness"))
            episode = run_episode(swe_env, harness, Echo(), task_id=INSTANCE)
        stolen = proxy.recorder.calls(other)
    finally:
        proxy.recorder.close(other)
    reports = [m["content"] for m in episode.messages if str(m.get("content", "")).startswith("FOUND ")]
    found = json.loads(reports[-1].removeprefix("FOUND "))
    assert found["host_server"] != "connected" and found["outside"] != "connected"
    assert not found["proxy_socket_visible"] and found["proxy_socket"] != "connected"
    assert found["other_key_in_path"] == 404 and found["list_calls"] == 404
    assert found["other_key_in_header"] == 200  # answered, but as this sandbox's own episode:
    assert stolen == []
    assert any(m.get("content") == "as the other episode" for m in episode.messages)
