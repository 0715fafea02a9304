"""End to end: the GRPO trainer learns the toy colour task with each loss, resumes after SIGKILL on the same
curve, trains LoRA with a KL term, and exports a checkpoint the `hf` agent loads."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rl_toy

from orchard_envs.trainers.grpo import train
from orchard_envs.trainers.grpo_config import GRPOConfig
from orchard_envs.trainers.metrics import read_metrics

TESTS = Path(__file__).parent
# Observed on two machines: the mean reward goes from about 0.15 (a random policy over 17 words) to about
# 0.6 within 16 steps under every loss. The margin asks for about half of that rise, so a different CPU's
# float rounding (a different sample here and there) cannot fail it, while a trainer that does not learn does.
LEARNING_MARGIN = 0.25
STALE_WEIGHTS = 1e-2  # mean |rollout - trainer logprob| per token above which the rollout weights were old


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rl_toy.register()
    return rl_toy.build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def toy_config(model: Path, out: Path, **overrides: object) -> GRPOConfig:
    settings: dict[str, object] = {
        "out": out,
        "model": str(model),
        "env": rl_toy.ENV_ID,
        "task_ids": rl_toy.COLOURS,
        "harness": "first-word",
        "steps": 16,
        "groups": 4,
        "group_size": 8,
        "balanced": False,
        "jobs": 1,
        "max_new_tokens": 3,
        "max_turns": 1,
        "lr": 1e-2,
        "progress": False,
        "save_steps": 100,
        "device": "cpu",
    }
    return GRPOConfig(**{**settings, **overrides})


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize("loss", ["grpo", "dr_grpo", "dapo"])
def test_each_loss_learns_the_toy_task(tiny_model: Path, tmp_path: Path, loss: str) -> None:
    result = train(toy_config(tiny_model, tmp_path / loss, loss=loss))
    rewards = [row["reward_mean"] for row in read_metrics(result.out)]
    assert len(rewards) == 16
    assert mean(rewards[-4:]) - mean(rewards[:4]) >= LEARNING_MARGIN, rewards


def test_balanced_rollout_logs_what_it_did(tiny_model: Path, tmp_path: Path) -> None:
    train(
        toy_config(tiny_model, tmp_path / "bar", steps=3, balanced=True, min_group_size=2, max_group_size=6)
    )
    rows = read_metrics(tmp_path / "bar")
    for row in rows:
        assert sum(row["pass_rate_histogram"]) == len(rl_toy.COLOURS)
        assert set(row["rollouts_per_task"]) <= set(rl_toy.COLOURS)
        assert all(2 <= n <= 6 for n in row["rollouts_per_task"].values())
        assert row["groups_kept"] <= 4
        assert row["groups_kept"] + row["groups_zero_variance"] <= row["groups_rolled"]


def test_lora_with_kl_exports_a_checkpoint_the_hf_agent_loads(tiny_model: Path, tmp_path: Path) -> None:
    from orchard_envs.agents.hf import HFAgent

    result = train(toy_config(tiny_model, tmp_path / "lora", steps=2, lora=True, lora_rank=4, kl_coef=0.1))
    rows = read_metrics(result.out)
    assert all(row["kl"] >= 0 for row in rows)
    agent = HFAgent(str(result.out), max_new_tokens=2)
    assert agent.generator.model.config.num_hidden_layers == 2
    assert not any("lora" in name for name, _ in agent.generator.model.named_parameters())


def cli(*args: str) -> list[str]:
    return [sys.executable, str(TESTS / "rl_toy.py"), "grpo", *args]


def toy_flags(model: Path, out: Path, steps: int) -> list[str]:
    flags = ["--out", str(out), "--model", str(model), "--env", rl_toy.ENV_ID, "--harness", "first-word"]
    for colour in rl_toy.COLOURS:
        flags += ["--task-ids", colour]
    return [
        *flags,
        "--steps", str(steps), "--groups", "4", "--group-size", "8", "--no-balanced", "--jobs", "1",
        "--max-new-tokens", "3", "--max-turns", "1", "--lr", "1e-2", "--no-progress", "--device", "cpu",
    ]  # fmt: skip


def run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_resume_after_sigkill_continues_the_same_curve(tiny_model: Path, tmp_path: Path) -> None:
    steps = 8
    straight = subprocess.run(cli(*toy_flags(tiny_model, tmp_path / "straight", steps)), env=run_env(),
                              capture_output=True, text=True, timeout=600)  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed_out = tmp_path / "killed"
    proc = subprocess.Popen(cli(*toy_flags(tiny_model, killed_out, steps)), env=run_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    metrics = killed_out / "metrics.jsonl"
    try:
        while proc.poll() is None:  # kill it somewhere after step 3 has been logged (and maybe saved)
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished before the kill
    resumed = subprocess.run(cli(*toy_flags(tiny_model, killed_out, steps), "--resume"), env=run_env(),
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumed_from = int(resumed.stderr.split("--resume: continuing from step ")[1].split()[0])
    assert 1 <= resumed_from < steps
    expected, got = read_metrics(tmp_path / "straight"), read_metrics(killed_out)
    assert [row["step"] for row in got] == list(range(1, steps + 1))
    assert [row["reward_mean"] for row in got] == [row["reward_mean"] for row in expected]
    # Same ops on the same weights in the same order: equal up to the last bits a BLAS may round differently
    assert [row["loss"] for row in got] == pytest.approx(
        [row["loss"] for row in expected], rel=1e-5, abs=1e-9
    )
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["steps"] == steps


def test_cli_mistakes_are_one_line(tiny_model: Path, tmp_path: Path) -> None:
    bad_sizes = subprocess.run(
        cli("--out", str(tmp_path / "x"), "--min-group-size", "6", "--max-group-size", "3"),
        env=run_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad_sizes.returncode != 0
    assert "--min-group-size 6 exceeds --max-group-size 3" in bad_sizes.stderr
    assert "Traceback" not in bad_sizes.stderr
    no_tasks = subprocess.run(
        cli("--out", str(tmp_path / "y"), "--model", str(tiny_model), "--env", rl_toy.ENV_ID),
        env=run_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert no_tasks.returncode != 0 and "--env needs --task-ids" in no_tasks.stderr
    assert "Traceback" not in no_tasks.stderr


def test_turn_fork_credit_values_turns_from_forked_continuations(tiny_model: Path, tmp_path: Path) -> None:
    config = toy_config(
        tiny_model, tmp_path / "forks", steps=2, credit="turn-fork", fork_turns=1, fork_samples=2,
        env_option=["rounds=2"], max_turns=2,
    )  # fmt: skip
    train(config)
    rows = read_metrics(tmp_path / "forks")
    assert all(row["forked_turns"] == row["rollouts"] for row in rows)  # one fork point per two-turn rollout


@pytest.mark.parametrize("variant", ["full", "lora-kl"])
def test_torchrun_ranks_share_the_rollouts_and_agree_on_the_batch(
    tiny_model: Path, tmp_path: Path, variant: str
) -> None:
    """Two FSDP2 ranks (gloo): full fine-tuning, and LoRA with a KL term to the adapters-off reference."""
    torchrun = Path(sys.executable).parent / "torchrun"
    lora = {"lora": True, "lora_rank": 4, "kl_coef": 0.1} if variant == "lora-kl" else {}
    extra = ["--lora", "--lora-rank", "4", "--kl-coef", "0.1"] if lora else []
    flags = [*toy_flags(tiny_model, tmp_path / "ranks", 2), *extra]
    done = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", str(TESTS / "rl_toy.py"), "grpo", *flags],
        env=run_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    alone = train(toy_config(tiny_model, tmp_path / "alone", steps=1, **lora))
    two_ranks, one_rank = read_metrics(tmp_path / "ranks"), read_metrics(alone.out)
    # step 1 rolls out from the same weights with the same draws, however the episodes are split over ranks
    assert two_ranks[0]["reward_mean"] == one_rank[0]["reward_mean"]
    assert two_ranks[0]["rollouts"] == one_rank[0]["rollouts"]
    assert two_ranks[0]["trained_tokens"] == one_rank[0]["trained_tokens"]
    # FSDP sums the same per-sequence gradients in another order: float32 rounding (1e-7 measured)
    assert two_ranks[0]["loss"] == pytest.approx(one_rank[0]["loss"], rel=1e-4, abs=1e-6)
    assert two_ranks[0]["grad_norm"] == pytest.approx(one_rank[0]["grad_norm"], rel=1e-4)
    # step 2 samples from the rollout copy: with the gathered weights it scores its tokens as the sharded
    # policy does (KV-cached against full forwards: 5e-8 per token measured); a copy left on the old
    # weights differs by the whole update (0.10 per token measured; 0.07 with LoRA)
    assert two_ranks[1]["logprob_mismatch"] < STALE_WEIGHTS
    assert (tmp_path / "ranks" / "model.safetensors").exists()


def test_a_served_policy_rolls_out_what_the_colocated_one_does(tiny_model: Path, tmp_path: Path) -> None:
    """--engine server: orchard-serve samples the rollouts and is sent the weights after each step. The
    server runs the same engine code on weights that round-trip exactly (float32 safetensors), so the run
    must match the colocated run step for step, and the server must end on the trained weights."""
    from helpers import serving

    from orchard_envs.agents.hf_backend import HFGenerator
    from orchard_envs.model_server.app import create_app

    colocated = train(toy_config(tiny_model, tmp_path / "colocated", steps=3))
    served = HFGenerator(str(tiny_model), device="cpu")
    with serving(create_app(served, api_key="k")) as url:
        config = toy_config(tiny_model, tmp_path / "served", steps=3, engine="server", engine_url=url)
        result = train(config.model_copy(update={"engine_api_key": "k"}))
    keys = ("reward_mean", "rollouts", "generated_tokens", "loss")
    curve = lambda out: [[row[key] for key in keys] for row in read_metrics(out)]  # noqa: E731
    assert curve(result.out) == curve(colocated.out)
    trained = result.model.state_dict()
    assert all((trained[name] == value).all() for name, value in served.model.state_dict().items())
    updates = sum(not row.get("skipped") for row in read_metrics(result.out))
    assert served.engine.weights_version == 1 + updates  # the start, then after every update


def test_ray_actors_roll_out_what_the_thread_workers_do(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--executor ray: each actor (in a local Ray's worker process) builds its own env, harness and agent
    from names, samples from the served policy and runs the turn forks of its rollouts. Episodes are a
    function of the weights and (seed, task, trial), so the curve must be the thread workers' exactly."""
    from conftest import require
    from helpers import serving

    from orchard_envs.agents.hf_backend import HFGenerator
    from orchard_envs.model_server.app import create_app

    require(importlib.util.find_spec("ray") is not None, "ray is not installed: pip install '.[ray]'")
    monkeypatch.setenv("PYTHONPATH", run_env()["PYTHONPATH"])  # the actors import rl_toy
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    settings = {
        "steps": 2, "env": f"rl_toy:{rl_toy.ENV_ID}", "credit": "turn-fork", "fork_turns": 1,
        "fork_samples": 2, "env_option": ["rounds=2"], "max_turns": 2,
    }  # fmt: skip
    threads = train(toy_config(tiny_model, tmp_path / "threads", **settings))
    served = HFGenerator(str(tiny_model), device="cpu")
    with serving(create_app(served, api_key="k")) as url:
        server = {"engine": "server", "engine_url": url, "engine_api_key": "k"}
        actors = train(toy_config(tiny_model, tmp_path / "ray", executor="ray", **server, **settings))
    keys = ("reward_mean", "rollouts", "generated_tokens", "forked_turns", "loss")
    curve = lambda out: [[row[key] for key in keys] for row in read_metrics(out)]  # noqa: E731
    assert curve(actors.out) == curve(threads.out)
    assert all(row["forked_turns"] == row["rollouts"] for row in read_metrics(actors.out))
    with pytest.raises(ValueError, match="--executor ray needs --engine server"):
        toy_config(tiny_model, tmp_path, executor="ray")


def test_the_server_engine_needs_a_url_and_full_weights(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--engine-url"):
        toy_config(tiny_model, tmp_path, engine="server")
    with pytest.raises(ValueError, match="without --lora"):
        toy_config(tiny_model, tmp_path, engine="server", engine_url="http://x", lora=True)
