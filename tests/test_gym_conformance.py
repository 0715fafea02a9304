"""Every registered env against Gymnasium's own tooling: check_env, vector envs (autoreset included),
TimeLimit, and clear errors for wrong names. SWE runs real local sandboxes (bubblewrap)."""

from __future__ import annotations

import json
import shutil
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import require
from gymnasium.spaces.utils import flatten, flatten_space, unflatten
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from orchard_envs.envs import ENVIRONMENTS
from orchard_envs.envs.spaces import AnyText
from orchard_envs.errors import ConfigError
from orchard_envs.tasks.claw.task import load_suite as claw_suite
from orchard_envs.tasks.swe.instance import load_suite as swe_suite
from orchard_envs.tasks.web.catalog import load_suite as web_suite

UNICODE = "✓ café 🎉"
SWE_TASK = next(i.instance_id for i in swe_suite("swe-mini") if i.repo == "inflection")
CLAW_TASK = claw_suite("claw-mini")[0].task_id
WEB_TASK = web_suite("web-mini")[0].task_id

# Per env: options that pin one fast task, and an action whose observation holds non-ASCII text.
SETUPS: dict[str, tuple[dict[str, Any], str]] = {
    "orchard/SWE-v0": (
        {"instance_ids": [SWE_TASK]},
        json.dumps({"name": "bash", "arguments": {"command": f"echo '{UNICODE}'"}}),
    ),
    "orchard/Claw-v0": ({"task_ids": [CLAW_TASK]}, json.dumps({"name": UNICODE, "arguments": {}})),
    "orchard/Desktop-v0": ({"task_ids": ["text_replace-00"]}, json.dumps({"name": UNICODE, "arguments": {}})),
    "orchard/Web-v0": ({"task_ids": [WEB_TASK]}, json.dumps({"name": UNICODE, "arguments": {}})),
}
VECTORS = {
    "sync": SyncVectorEnv,
    "async-shared": lambda fns: AsyncVectorEnv(fns, shared_memory=True),
    "async-copied": lambda fns: AsyncVectorEnv(fns, shared_memory=False),
}


@pytest.fixture(params=sorted(ENVIRONMENTS))
def env_id(request) -> str:
    if request.param == "orchard/SWE-v0":
        require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    if request.param == "orchard/Desktop-v0":
        require(shutil.which("Xvfb") is not None, "Xvfb is not installed (scripts/setup.sh)")
    if request.param == "orchard/Web-v0":
        require(shutil.which("chromium") is not None, "Chromium is not installed (scripts/setup.sh)")
    return request.param


def _texts(observations: Any) -> Any:
    """A batch's text observations (a GUI env's batch is a dict of text and screenshot batches)."""
    return observations["text"] if isinstance(observations, dict) else observations


def test_every_env_has_a_setup_here():
    assert set(SETUPS) == set(ENVIRONMENTS)


def test_check_env_passes_with_warnings_as_errors(env_id):
    options, _ = SETUPS[env_id]
    with gym.make(env_id, **options) as env, warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_vector_envs_carry_real_observations_through_autoreset(env_id, vector):
    """Shared memory used to return every observation as 'a' * 1,000,000 and to crash on the first
    non-ASCII character (KeyError in `_flatten_text`)."""
    options, action = SETUPS[env_id]
    fns = [lambda: gym.make(env_id, max_steps=1, **options) for _ in range(2)]
    envs = VECTORS[vector](fns)
    try:
        observations, infos = envs.reset(seed=0)
        texts = _texts(observations)
        assert list(texts) == list(infos["instruction"]) and len(texts[0]) < 100_000
        observations, rewards, terminated, truncated, infos = envs.step((action, action))
        assert all(UNICODE in observation for observation in _texts(observations)), observations
        assert list(truncated) == [True, True] and not any(terminated)  # cut by max_steps=1, and graded
        assert list(infos["_grading"]) == [True, True] and len(infos["grading"]["status"]) == 2
        assert list(rewards) == list(infos["grading"]["reward"])
        observations, rewards, terminated, truncated, infos = envs.step((action, action))  # autoreset
        assert list(_texts(observations)) == list(infos["instruction"]) and not any(truncated)
        batch = observations
        if isinstance(batch, dict):  # shared memory hands back its own views: plain arrays and strings here
            batch = {"text": tuple(batch["text"]), "screenshot": np.asarray(batch["screenshot"])}
        assert envs.observation_space.contains(batch if isinstance(batch, dict) else tuple(batch))
    finally:
        envs.close()


def test_time_limit_truncation_is_graded(env_id):
    """`max_episode_steps` adds Gymnasium's TimeLimit, which used to cut the episode without a verdict."""
    options, action = SETUPS[env_id]
    with gym.make(env_id, max_episode_steps=1, **options) as env:
        env.reset(seed=0)
        _, reward, terminated, truncated, info = env.step(action)
        assert truncated and not terminated and info["verdict"].reward == reward
        assert info["grading"]["status"] in {"unresolved", "failed"}
        with pytest.raises(ConfigError, match="call reset"):
            env.unwrapped.step(action)  # graded once: the episode is over


def test_every_env_takes_max_steps(env_id):
    options, action = SETUPS[env_id]
    with gym.make(env_id, max_steps=2, **options) as env:
        env.reset(seed=0)
        assert env.step(action)[3] is False and env.step(action)[3] is True
    with pytest.raises(ConfigError, match="max_steps must be"):
        gym.make(env_id, max_steps=0, **options)


def test_wrong_names_are_refused_with_the_close_match(env_id):
    options, _ = SETUPS[env_id]
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        gym.make(env_id, max_stepz=3)
    with gym.make(env_id, **options) as env:
        with pytest.raises(ConfigError, match="unknown reset option 'taskid'; did you mean 'task_id'"):
            env.reset(options={"taskid": "x"})
        task_id = next(iter(options.values()))[0]
        with pytest.raises(ConfigError, match=f"no task {task_id[:-1]!r}.*did you mean {task_id!r}"):
            env.reset(options={"task_id": task_id[:-1]})


def test_a_misspelt_backend_is_refused_at_make():
    with pytest.raises(ConfigError, match="unknown sandbox backend 'dockr'; did you mean 'docker'"):
        gym.make("orchard/SWE-v0", backend="dockr")
    with pytest.raises(ConfigError, match=r"sandbox backend 'local'.*unexpected keyword argument 'nope'"):
        gym.make("orchard/SWE-v0", backend_options={"nope": 1})


def test_any_text_flattens_and_round_trips_any_string():
    space = AnyText(16)
    text = "\x00" + UNICODE + "\udcff"  # NUL and a lone surrogate (undecodable bytes) included
    flat = flatten(space, text)
    assert flat.shape == (16,) and flatten_space(space).contains(flat)
    assert unflatten(space, flat) == text
    with pytest.raises(ValueError, match="cannot hold"):
        flatten(space, "x" * 17)
    assert space == AnyText(16) and space != AnyText(17) and space.contains(space.sample())
    assert np.issubdtype(flat.dtype, np.integer)
