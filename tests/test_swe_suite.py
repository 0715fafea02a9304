"""The bundled `swe-mini` suite: its shape, and every instance solvable by the oracle and failed by no-op."""

from __future__ import annotations

from collections import defaultdict

import gymnasium as gym
import pytest

from orchard_envs.agents.swe_oracle import gold_patch_actions
from orchard_envs.tasks.swe.instance import PyPISource, load_suite
from orchard_envs.tasks.swe.statement import leaks_fix

SUITE = load_suite("swe-mini")
IDS = [instance.instance_id for instance in SUITE]


def test_suite_size_libraries_and_split_by_library():
    libraries = defaultdict(set)
    for instance in SUITE:
        libraries[instance.repo].add(instance.split)
    assert len(SUITE) >= 60 and len(libraries) >= 6
    assert all(len(splits) == 1 for splits in libraries.values()), "a library appears in two splits"
    assert {split for splits in libraries.values() for split in splits} == {"train", "test"}


def test_instances_are_pinned_and_do_not_reveal_the_fix():
    for instance in SUITE:
        assert isinstance(instance.source, PyPISource) and len(instance.source.sha256) == 64
        assert instance.FAIL_TO_PASS and not set(instance.FAIL_TO_PASS) & set(instance.PASS_TO_PASS)
        assert not leaks_fix(instance.problem_statement, instance.patch), instance.instance_id


@pytest.fixture(scope="module", params=["local", "docker"])
def env(request):
    environment = gym.make(
        "orchard/SWE-v0", suite="swe-mini", backend=request.getfixturevalue(f"{request.param}_backend")
    )
    yield environment
    environment.close()


@pytest.mark.parametrize("task_id", IDS)
def test_oracle_resolves_and_noop_does_not(env, task_id):
    task = env.unwrapped.find_task(task_id)
    noop = [{"name": "submit", "arguments": {}}]
    for agent, expected in ((gold_patch_actions(task.patch), 1.0), (noop, 0.0)):
        env.reset(options={"task_id": task_id})
        for action in agent:
            observation, reward, terminated, _, info = env.step(action)
            assert not observation.startswith("Error:"), observation
        assert terminated and reward == expected, info["grading"]["reason"]
        assert info["grading"]["status"] == ("resolved" if expected else "unresolved")
