"""Trials are independent samples: each draw's seed comes from (run seed, task, trial, turn), reproducibly.

The end-to-end test runs k=3 trials of one SWE task with the embedded SmolLM2 at temperature 1 through the
bench's own worker (`EpisodeWorker`, what `orchard-bench run` uses); with the old seed (run seed + turn,
the trial never reaching the agent) the three episodes were one episode repeated.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_runner import TASK

from orchard_envs.agents.base import AssistantTurn, EpisodeContext
from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.sampling_seeds import SEED_BITS, EpisodeDraws, draw_seed
from orchard_envs.episodes import Episode
from orchard_envs.leaderboard.executor import EpisodeFactory, EpisodeWorker, Job

KEYS = st.tuples(
    st.integers(min_value=-(2**63), max_value=2**64),
    st.text(max_size=40),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=10_000),
)


@given(KEYS, KEYS)
def test_distinct_inputs_give_distinct_seeds_in_a_63_bit_range(first, second):
    a, b = draw_seed(*first), draw_seed(*second)
    assert 0 <= a < 2**SEED_BITS and 0 <= b < 2**SEED_BITS
    assert (a == b) == (first == second)


@given(KEYS)
def test_each_field_changes_the_seed(key):
    """Nearby keys (the next trial, the next turn, the next run seed) are not the old seed plus one."""
    run_seed, task_id, trial, turn = key
    seeds = {
        draw_seed(*key),
        draw_seed(run_seed + 1, task_id, trial, turn),
        draw_seed(run_seed, task_id + "x", trial, turn),
        draw_seed(run_seed, task_id, trial + 1, turn),
        draw_seed(run_seed, task_id, trial, turn + 1),
    }
    assert len(seeds) == 5


def test_the_seed_is_stable_across_processes_and_hash_salts():
    """A rerun in a fresh process (another PYTHONHASHSEED) must draw the same seeds: no `hash()`."""
    code = "from orchard_envs.agents.sampling_seeds import draw_seed; print(draw_seed(7, 'parse-1', 2, 3))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": salt},
        ).stdout.strip()
        for salt in ("1", "2")
    }
    assert outputs == {str(draw_seed(7, "parse-1", 2, 3))}


def encode(action: dict) -> AssistantTurn:
    return AssistantTurn(content=str(action))


def test_unseeded_runs_draw_unseeded_and_the_context_names_the_episode():
    assert EpisodeDraws(None, "t", 1).seed(0) is None
    context = EpisodeContext("env", None, [], encode, task_id="t", trial=4)
    assert context.draws(9).seed(2) == draw_seed(9, "t", 4, 2)
    assert context.draws(9).seed(2) != EpisodeContext("env", None, [], encode, task_id="t").draws(9).seed(2)


def sampled(episodes: list[Episode]) -> list[list[list[int]]]:
    """The ids each episode's model turns sampled."""
    return [[turn.token_ids for turn in episode.turns] for episode in episodes]


def run_trials(factory: EpisodeFactory, k: int) -> list[Episode]:
    """The k trials of TASK, as `orchard-bench run` runs them: one worker, one agent clone."""
    worker = EpisodeWorker(factory)
    try:
        results = [worker.run(Job(TASK.instance_id, trial), max_infra_retries=0) for trial in range(k)]
    finally:
        worker.close()
    return [result[0] for result in results if result is not None]


@pytest.fixture(scope="module")
def factory(local_backend, hf_generator) -> EpisodeFactory:
    agent = HFAgent(generator=hf_generator, temperature=1.0, seed=11, max_new_tokens=8)
    return EpisodeFactory(
        env_id="orchard/SWE-v0",
        env_kwargs={"backend": local_backend, "max_steps": 2},
        harness_name="bash-only",
        agent_name="hf",
        harness_options={"max_turns": 1},  # one draw per trial: the first turn already differs
        shared_agent=agent,
    )


def test_k_trials_at_temperature_one_differ_and_a_rerun_reproduces_them(factory):
    first = run_trials(factory, k=3)
    assert len(first) == 3
    assert all(e.metadata.status not in ("error", "infra_error") for e in first), [
        e.metadata.error for e in first
    ]
    draws = sampled(first)
    assert all(draws) and len({repr(d) for d in draws}) == 3, "the trials are one episode repeated"
    again = run_trials(factory, k=3)  # a fresh worker and agent clone, the same run seed
    assert sampled(again) == draws
    assert [e.messages for e in again] == [e.messages for e in first]
