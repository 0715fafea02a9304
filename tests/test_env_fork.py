"""`env.fork()`: an independent env at the same episode state (per-turn credit rolls continuations out of it).

Claw forks copy every service's state into a new service host; SWE forks fork the sandbox. What either copy
does must never reach the other: the checks finish the fork first, then the original, and grade both.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.claw.task import load_suite

SUITE = load_suite("claw-mini")
# tasks whose oracle writes to a service, so a shared state would show (a second write, a changed record)
WRITING = [t for t in SUITE if len(t.oracle) >= 3 and not t.faults and t.user is None][:3]


@pytest.fixture(scope="module")
def claw():
    env = gym.make("orchard/Claw-v0", suite="claw-mini")
    yield env.unwrapped
    env.close()


def step(env, action) -> tuple[float, bool]:
    _, reward, terminated, truncated, _ = env.step(action)
    return reward, terminated or truncated


@pytest.mark.parametrize("task", WRITING, ids=lambda t: t.task_id)
def test_claw_fork_and_original_are_independent(claw, task) -> None:
    plan = [action.model_dump() for action in task.oracle]
    finish = plan[-1]
    assert finish["name"] == "finish"
    half = len(plan) // 2
    claw.reset(options={"task_id": task.task_id})
    for action in plan[:half]:
        step(claw, action)
    before = claw._host.snapshot()
    twin = claw.fork()
    try:
        for action in plan[half:]:  # the fork completes the task...
            reward, ended = step(twin, action)
        assert ended and reward == 1.0
        assert claw._host.snapshot() == before  # ...without touching the original's services
        for action in plan[half:]:  # and the original, on its own, still can
            reward, ended = step(claw, action)
        assert ended and reward == 1.0
    finally:
        twin.close()


def test_claw_fork_gives_up_nothing_when_the_original_ends_first(claw) -> None:
    task = WRITING[0]
    claw.reset(options={"task_id": task.task_id})
    twin = claw.fork()
    try:
        reward, ended = step(claw, {"name": "finish", "arguments": {"answer": ""}})
        assert ended and reward < 1.0
        for action in task.oracle:
            reward, ended = step(twin, action.model_dump())
        assert ended and reward == 1.0
    finally:
        twin.close()


def test_fork_needs_an_open_episode(claw) -> None:
    task = WRITING[0]
    claw.reset(options={"task_id": task.task_id})
    step(claw, {"name": "finish", "arguments": {"answer": ""}})
    with pytest.raises(ConfigError, match="needs an open episode"):
        claw.fork()


@pytest.fixture
def swe(local_backend):
    env = gym.make("orchard/SWE-v0", suite="swe-mini", backend=local_backend, max_steps=40)
    yield env.unwrapped
    env.close()


def test_swe_fork_has_the_files_and_its_own_sandbox(swe) -> None:
    from orchard_envs.agents.swe_oracle import gold_patch_actions
    from orchard_envs.tasks.swe.instance import load_suite as load_swe

    task = next(i for i in load_swe("swe-mini") if i.repo == "inflection")
    swe.reset(options={"task_id": task.instance_id})
    step(swe, {"name": "bash", "arguments": {"command": "echo before-fork > NOTE.txt"}})
    twin = swe.fork()
    try:
        observation, *_ = twin.step({"name": "bash", "arguments": {"command": "cat NOTE.txt; rm NOTE.txt"}})
        assert "before-fork" in observation
        actions = [a for a in gold_patch_actions(task.patch) if a["name"] != "submit"]
        for action in [*actions, {"name": "submit", "arguments": {}}]:
            reward, ended = step(twin, action)
        assert ended and reward == 1.0  # the fork, with the fix, resolves
        observation, *_ = swe.step({"name": "bash", "arguments": {"command": "cat NOTE.txt"}})
        assert "before-fork" in observation  # the fork's rm and fix never reached the original
        reward, ended = step(swe, {"name": "submit", "arguments": {}})
        assert ended and reward == 0.0
    finally:
        twin.close()


def test_tool_paths_cannot_reach_the_snapshot_and_restore_routes(claw) -> None:
    """The fork's control routes change a whole service; an id like `..` must not walk a tool's path to
    them (ids are quoted, so `/` never enters a path; a dot segment only climbs within the tool's path)."""
    import re

    from orchard_envs.tasks.claw.catalog import TOOLS, openai_tools

    def collections() -> dict:
        return {name: state["collections"] for name, state in claw._host.snapshot().items()}

    for spec in TOOLS.values():
        if spec.path is None or "{" not in spec.path:
            continue
        schema = openai_tools([spec.name])[0]["function"]["parameters"]
        for evil in ("..", "../_restore", "../_snapshot", "..%2F_snapshot", "/_snapshot"):
            claw.reset(options={"task_id": WRITING[0].task_id})
            claw._tools = openai_tools(list(TOOLS))  # every tool, not just the task's
            before = collections()
            arguments = {name: evil for name in re.findall(r"{(\w+)}", spec.path)}
            for name in schema.get("required", []):
                wants_list = schema["properties"][name].get("type") == "array"
                arguments.setdefault(name, ["x@example.com"] if wants_list else "x")
            observation, *_ = claw.step({"name": spec.name, "arguments": arguments})
            assert '"collections"' not in observation and '"next_id"' not in observation, (spec.name, evil)
            assert collections() == before, (spec.name, evil)  # nothing was restored or written
