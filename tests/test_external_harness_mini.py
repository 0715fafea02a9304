"""mini-swe-agent under `orchard-bench run --harness external:mini-swe-agent`, end to end: three swe-mini
instances resolved with the gold-replay upstream on local and docker, their episodes trained on by
`orchard-train sft`, and mini-swe-agent's own trajectory agreeing with ours on the number of model calls."""

from __future__ import annotations

import json

import pytest
from helpers import serving
from proxy_helpers import gold_replay_app
from typer.testing import CliRunner

from orchard_envs.episodes import read_episodes
from orchard_envs.harnesses.external_specs.mini_swe_agent import wheelhouse
from orchard_envs.leaderboard.cli import app as bench
from orchard_envs.trainers.cli import app as train

TASKS = [
    "toolz-0.12.1__remove_branch__581f683f",
    "toolz-0.12.1__swap_arguments__4857ba1a",
    "toolz-0.12.1__swap_arithmetic__19beccd0",
]


@pytest.fixture(scope="module")
def gold_url():
    with serving(gold_replay_app()) as url:
        yield f"{url}/v1"


@pytest.fixture
def wheels():
    from conftest import require

    require(any(wheelhouse().glob("mini_swe_agent-*.whl")), f"no mini-swe-agent wheelhouse at {wheelhouse()}")


@pytest.mark.parametrize("backend_name", ["local", "docker"])
def test_mini_swe_agent_resolves_three_instances_and_its_episodes_train(
    request, backend_name, wheels, gold_url, tiny_model, tmp_path
):
    request.getfixturevalue(f"{backend_name}_backend")
    out = tmp_path / "run"
    flags = ["run", "--suite", "swe-mini", "--tasks", ",".join(TASKS), "--agent", "openai:gold"]
    flags += [
        "--option",
        f"base_url={gold_url}",
        "--option",
        "api_key=unused",
        "--option",
        "return_token_ids=false",
    ]
    flags += ["--harness", "external:mini-swe-agent", "--backend", backend_name, "--out", str(out)]
    result = CliRunner().invoke(bench, flags)
    assert result.exit_code == 0, result.output
    episodes = read_episodes(out / "episodes.jsonl")
    assert sorted(e.metadata.task_id for e in episodes) == sorted(TASKS)
    for episode in episodes:
        meta = episode.metadata
        assert meta.status == "submitted" and meta.resolved and meta.harness == "external:mini-swe-agent"
        assert meta.model_calls == meta.harness_calls == 2  # its trajectory and ours agree
        assert [m["role"] for m in episode.messages] == ["system", "user", "assistant", "tool", "assistant"]
    trained = tmp_path / "sft"
    flags = ["sft", "--episodes", str(out / "episodes.jsonl"), "--model", tiny_model, "--out", str(trained)]
    flags += [
        "--max-steps",
        "2",
        "--seq-len",
        "2048",
        "--batch-size",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(train, flags)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 2


@pytest.mark.timeout(900)  # about a minute alone; long prompts on a CPU shared with the other workers
def test_mini_swe_agent_on_the_embedded_model_through_orchard_serve(
    wheels, local_backend, hf_generator, tmp_path
):
    """The real model behind orchard-serve: every call mini-swe-agent makes is recorded with the ids the
    model was conditioned on and sampled, whether or not the model gets anywhere."""
    from orchard_envs.model_server.app import create_app

    out = tmp_path / "smol"
    with serving(create_app(hf_generator, default_max_tokens=24)) as url:
        flags = ["run", "--suite", "swe-mini", "--tasks", TASKS[0], "--agent", f"openai:{hf_generator.name}"]
        flags += ["--option", f"base_url={url}/v1", "--option", "api_key=unused", "--backend", "local"]
        flags += ["--harness", "external:mini-swe-agent", "--harness-option", "max_calls=2"]
        flags += ["--out", str(out)]
        result = CliRunner().invoke(bench, flags)
    assert result.exit_code == 0, result.output
    (episode,) = read_episodes(out / "episodes.jsonl")
    meta = episode.metadata
    assert meta.model == hf_generator.name and 1 <= meta.model_calls <= 2
    assert meta.status in ("submitted", "step_limit", "error"), meta.error
    assert episode.turns and all(turn.token_ids and turn.prompt_token_ids for turn in episode.turns)
    assert all(turn.extends_previous is not None for turn in episode.turns[1:])
