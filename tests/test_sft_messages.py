# ruff: noqa: F811 (the imported fixtures are parameters)
"""What `orchard-train sft` tells its user: one-line mistakes, loud truncation, Ctrl-C and resume, the
size of its output and a help text that fits 80 columns."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from orchard_envs.trainers import sft, state
from orchard_envs.trainers.cli import app
from orchard_envs.trainers.metrics import read_metrics
from tests.test_bench_run import read_only_folder, unprivileged  # noqa: F401 (a fixture)
from tests.test_sft_train import config, episodes  # noqa: F401 (a fixture)

TRAIN = [sys.executable, "-m", "orchard_envs.trainers.cli", "sft"]


def test_an_unknown_device_is_one_line_and_creates_nothing(tiny_model, tmp_path):
    out = tmp_path / "out"
    flags = ["sft", "--episodes", "x.jsonl", "--model", tiny_model, "--out", str(out), "--device", "gpu"]
    result = CliRunner().invoke(app, flags)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--device: 'gpu' is not a device: use cpu or cuda" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_read_only_out_is_one_line_before_any_work(read_only_folder):
    for out in (read_only_folder, read_only_folder / "ckpt"):
        command = unprivileged([*TRAIN, "--episodes", "x.jsonl", "--out", str(out), "--device", "cpu"])
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=read_only_folder.parent
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert (
            len(done.stderr.strip().splitlines()) == 1 and "--out" in done.stderr and "cannot" in done.stderr
        )
    assert list(read_only_folder.iterdir()) == []


def test_cut_examples_are_a_loud_warning_with_the_numbers_and_the_fix(tiny_model, episodes, tmp_path, capsys):
    whole = sft.train(config(tiny_model, episodes, tmp_path / "whole", max_steps=1))
    assert "warning" not in capsys.readouterr().err and whole.data["truncated_examples"] == 0
    longest = whole.data["longest_example"]
    cut = sft.train(config(tiny_model, episodes, tmp_path / "cut", max_steps=1, seq_len=longest - 4))
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    data = cut.data
    total = data["trained_tokens"] + data["truncated_trained_tokens"]
    expected = (
        f"--seq-len {longest - 4} cut {data['truncated_examples']} of {data['examples']} examples, dropping "
        f"{data['truncated_trained_tokens']:,} of {total:,} trained tokens"
    )
    assert data["truncated_examples"] >= 1 and expected in line
    assert f"--seq-len {-(-longest // 256) * 256} keeps them all" in line

    with pytest.raises(sft.ConfigError) as refused:
        sft.train(config(tiny_model, episodes, tmp_path / "none", seq_len=16))
    assert f"--seq-len 16 cut all {whole.data['examples']} examples" in str(
        refused.value
    ) and "raise --seq-len to" in str(refused.value)
    assert "{" not in str(refused.value)  # words, not a JSON dump


def test_ctrl_c_between_steps_saves_the_step_and_resume_says_where_it_continues(
    tiny_model, episodes, tmp_path
):
    out = tmp_path / "run"
    flags = ["--episodes", episodes, "--model", tiny_model, "--out", str(out), "--seq-len", "512"]
    flags += ["--batch-size", "2", "--no-progress", "--device", "cpu"]
    process = subprocess.Popen([*TRAIN, *flags, "--max-steps", "100000"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_metrics(out)) < 2:
        time.sleep(0.05)  # interrupt once some steps are done
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert "stopping: finishing this step" in stderr
    step = int(re.search(r"continue from step (\d+)", stderr).group(1))
    assert state.saved_step(out) == step and not state.unfinished_saves(out)

    resumed = subprocess.run(
        [*TRAIN, *flags, "--max-steps", str(step + 1), "--resume"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"--resume: continuing from step {step}" in resumed.stderr
    assert [row["step"] for row in _metrics(out)][-1] == step + 1


def _metrics(out) -> list[dict]:
    try:
        return read_metrics(out)
    except (OSError, json.JSONDecodeError):  # not written yet, or a line being written
        return []


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_a_state_save_finishes_or_abandons_it_cleanly(
    tiny_model,
    episodes,
    tmp_path,
    monkeypatch,
    presses,
):
    """Real SIGINTs, sent while the second periodic save (step 4) is writing: one lets it finish and stops
    there; two abandon it, leaving the step-2 state and no temporary folder."""
    import torch.distributed.checkpoint as dcp

    real_save, calls = dcp.save, []

    def save_with_ctrl_c(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(dcp, "save", save_with_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(sft.Interrupted) as stopped:
        sft.train(config(tiny_model, episodes, out, save_steps=2, max_steps=8))
    assert not state.unfinished_saves(out) and not (out / ".state-tmp").exists()
    assert stopped.value.step == state.saved_step(out) == (4 if presses == 1 else 2)
    assert ("abandoned" in str(stopped.value)) == (presses == 2)
    assert f"continue from step {stopped.value.step}" in str(stopped.value)


def test_resume_without_a_saved_state_says_why_and_removes_an_unfinished_save(
    tiny_model,
    episodes,
    tmp_path,
    capsys,
):
    out = tmp_path / "run"
    sft.train(config(tiny_model, episodes, out, max_steps=1, resume=True))
    assert f"nothing to resume in {out} (it does not exist); starting from step 0" in capsys.readouterr().err
    staged = out / state.STATE / "step-00000009.tmp"
    staged.mkdir(parents=True)
    sft.train(config(tiny_model, episodes, out, max_steps=2, resume=True))
    err = capsys.readouterr().err
    assert f"removed an unfinished state save: {staged}" in err and "continuing from step 1" in err
    assert not staged.exists()


def test_only_the_newest_states_are_kept_and_the_export_is_the_weights_alone(tiny_model, episodes, tmp_path):
    from safetensors import safe_open

    kept = sft.train(config(tiny_model, episodes, tmp_path / "two", save_steps=2, save_total_limit=2)).out
    assert [step for step, _ in state.state_dirs(kept)] == [6, 8]
    bare = sft.train(config(tiny_model, episodes, tmp_path / "none", save_steps=2, save_total_limit=0)).out
    assert not (bare / state.STATE).exists()
    names = sorted(path.name for path in bare.iterdir() if path.is_file())
    assert "model.safetensors" in names and not [n for n in names if n.endswith((".bin", ".pt", ".pth"))]
    with safe_open(bare / "model.safetensors", "pt") as weights:
        assert {str(weights.get_tensor(key).dtype) for key in weights.keys()} == {"torch.float32"}  # noqa: SIM118


def test_help_is_readable_at_80_columns():
    done = subprocess.run(
        [*TRAIN, "--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}, timeout=60
    )
    assert done.returncode == 0 and "…" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    assert (
        "--credit-assignment / --no-credit-assignment" in done.stdout and "--save-total-limit" in done.stdout
    )
