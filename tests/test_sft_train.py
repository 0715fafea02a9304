"""The SFT loop on a tiny random model: it learns, saves a loadable checkpoint, resumes on the same curve."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from orchard_envs.episodes import Episode, EpisodeWriter
from orchard_envs.errors import ConfigError
from orchard_envs.trainers import sft
from orchard_envs.trainers.cli import app
from orchard_envs.trainers.config import SFTConfig
from orchard_envs.trainers.metrics import read_metrics
from tests.helpers import bash_call, training_episode


def make_episode(number: int, *, resolved: bool = True, repeat: bool = False) -> Episode:
    commands = ["ls", f"cat file{number}.py", "pytest -q"] if not repeat else ["ls", "ls", "ls"]
    messages: list[dict] = [
        {"role": "system", "content": "You fix bugs in a repository."},
        {"role": "user", "content": f"Test number {number} fails."},
    ]
    for k, command in enumerate(commands):
        messages.append({"role": "assistant", "content": None, "tool_calls": [bash_call(f"c{k}", command)]})
        messages.append({"role": "tool", "tool_call_id": f"c{k}", "content": f"output of {command}"})
    messages.append({"role": "assistant", "content": f"Done with bug {number}."})
    return training_episode(messages, resolved=resolved, task_id=f"toy-{number}")


@pytest.fixture
def episodes(tmp_path):
    path = tmp_path / "episodes.jsonl"
    with EpisodeWriter(path) as writer:
        for number in range(8):
            writer.write(make_episode(number))
        writer.write(make_episode(100, resolved=False, repeat=True))
    return str(path)


def config(tiny_model: str, episodes: str, out, **overrides) -> SFTConfig:
    settings = dict(
        episodes=[episodes],
        out=out,
        model=tiny_model,
        seq_len=512,
        batch_size=2,
        lr=3e-3,
        warmup_ratio=0.1,
        max_steps=8,
        progress=False,
        device="cpu",
    )
    return SFTConfig(**{**settings, **overrides})


def test_loss_goes_down_on_a_fixed_small_set(tiny_model, episodes, tmp_path):
    result = sft.train(config(tiny_model, episodes, tmp_path / "run", max_steps=12))
    losses = [row["loss"] for row in read_metrics(result.out)]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5  # nats; a random model starts near ln(49152)
    assert result.data["unresolved_episodes"] == 1
    assert result.data["trained_tokens"] == result.data["trained_tokens_by_mode"]["resolved_only"]


def test_the_checkpoint_reloads_with_the_same_logits(tiny_model, episodes, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = sft.train(config(tiny_model, episodes, tmp_path / "run", max_steps=3))
    reloaded = AutoModelForCausalLM.from_pretrained(result.out).eval()
    tokenizer = AutoTokenizer.from_pretrained(result.out)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    ids = torch.tensor([tokenizer.encode("Fix the failing test, please.")])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, result.model.eval()(ids).logits)


def test_resume_continues_the_same_curve(tiny_model, episodes, tmp_path, monkeypatch):
    straight = sft.train(config(tiny_model, episodes, tmp_path / "straight", save_steps=3))
    expected = [row["loss"] for row in read_metrics(straight.out)]

    real_step = sft._step

    def crash_at_step_five(*args, **kwargs):
        if args[5] == 4:  # the step index
            raise KeyboardInterrupt  # the run dies after saving at step 3 and logging step 4
        return real_step(*args, **kwargs)

    monkeypatch.setattr(sft, "_step", crash_at_step_five)
    with pytest.raises(KeyboardInterrupt):
        sft.train(config(tiny_model, episodes, tmp_path / "resumed", save_steps=3))
    assert [row["step"] for row in read_metrics(tmp_path / "resumed")] == [1, 2, 3, 4]
    monkeypatch.setattr(sft, "_step", real_step)
    with pytest.raises(ConfigError, match="--resume"):
        sft.train(config(tiny_model, episodes, tmp_path / "resumed", save_steps=3))
    sft.train(config(tiny_model, episodes, tmp_path / "resumed", save_steps=3, resume=True))
    rows = read_metrics(tmp_path / "resumed")
    assert [row["step"] for row in rows] == list(range(1, 9))
    assert [row["loss"] for row in rows] == pytest.approx(expected, rel=1e-4)


def test_lora_trains_adapters_and_saves_them_merged(tiny_model, episodes, tmp_path):
    from transformers import AutoModelForCausalLM

    result = sft.train(config(tiny_model, episodes, tmp_path / "lora", lora=True, lora_rank=4, max_steps=4))
    assert not (result.out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(result.out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        trained = result.model.eval()(input_ids=ids).logits
        torch.testing.assert_close(merged(ids).logits, trained, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(base(ids).logits, trained)


def test_credit_assignment_trains_the_productive_prefix_of_unresolved_episodes(
    tiny_model, episodes, tmp_path
):
    result = sft.train(config(tiny_model, episodes, tmp_path / "credit", credit_assignment=True, max_steps=1))
    modes = result.data["trained_tokens_by_mode"]
    assert modes["resolved_only"] < modes["credit"] < modes["all"]
    assert result.data["trained_tokens"] == modes["credit"]


def test_filters_that_leave_nothing_say_so(tiny_model, episodes, tmp_path):
    with pytest.raises(ConfigError, match="nothing to train on"):
        sft.train(config(tiny_model, episodes, tmp_path / "none", split="test"))


def test_cli_trains_and_reports_json(tiny_model, episodes, tmp_path):
    out = tmp_path / "cli"
    flags = ["sft", "--episodes", episodes, "--model", tiny_model, "--out", str(out), "--max-steps", "2"]
    flags += ["--seq-len", "512", "--batch-size", "2", "--no-progress", "--device", "cpu"]
    result = CliRunner().invoke(app, flags)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 2 and (out / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--episodes", "nowhere/*.jsonl"], "no episode file matches"),
        (["--episodes", "{episodes}", "--unresolved", "maybe"], "--unresolved"),
        (["--episodes", "{episodes}", "--batch-size", "3", "--micro-batch-size", "2"], "multiple"),
    ],
)
def test_cli_mistakes_are_one_line_errors(tiny_model, episodes, tmp_path, flags, message):
    flags = [flag.format(episodes=episodes) for flag in flags]
    result = CliRunner().invoke(app, ["sft", *flags, "--model", tiny_model, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_torchrun_with_fsdp2_matches_one_process(tiny_model, episodes, tmp_path):
    """Two CPU processes (gloo) sharding with FSDP2 train the same model as one process does."""
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM

    flags = ["sft", "--episodes", episodes, "--model", tiny_model, "--max-steps", "3", "--seq-len", "512"]
    flags += ["--batch-size", "3", "--lr", "3e-3", "--warmup-ratio", "0.1", "--no-progress"]
    flags += ["--device", "cpu"]
    single = sft.train(config(tiny_model, episodes, tmp_path / "one", max_steps=3, batch_size=3))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone"]
    done = subprocess.run(
        [*torchrun, "-m", "orchard_envs.trainers.cli", *flags, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len([line for line in done.stdout.splitlines() if line.startswith("{")]) == 1  # rank 0 reports
    two = [row["loss"] for row in read_metrics(tmp_path / "two")]
    assert two == pytest.approx([row["loss"] for row in read_metrics(single.out)], rel=1e-5)
    sharded = AutoModelForCausalLM.from_pretrained(tmp_path / "two")
    for mine, theirs in zip(sharded.parameters(), single.model.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
