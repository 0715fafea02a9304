"""`orchard-bench run` end to end: real envs, real processes killed with SIGKILL and resumed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import require

from orchard_envs.errors import SandboxError
from orchard_envs.leaderboard.executor import EpisodeFactory, Job, run_local
from orchard_envs.leaderboard.store import ResultsStore
from orchard_envs.leaderboard.suites import load

BENCH = [sys.executable, "-m", "orchard_envs.leaderboard.cli"]
CLAW_TEST = ["--suite", "claw-mini", "--split", "test"]
# what must be identical between an interrupted-and-resumed run and an uninterrupted one
OUTCOME = ("task_id", "trial", "status", "resolved", "reward", "steps", "turns", "category", "split")


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=timeout)


def outcomes(path: Path) -> list[tuple]:
    with sqlite3.connect(path / "results.db") as db:
        columns = ", ".join(OUTCOME)
        return db.execute(f"SELECT {columns} FROM results ORDER BY task_id, trial").fetchall()


def recorded(path: Path) -> int:
    try:
        return len(outcomes(path))
    except sqlite3.Error:  # not created yet
        return 0


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path / "results.db") as db:
        return list(db.iterdump())


def test_oracle_and_noop_runs_record_every_episode(tmp_path):
    oracle, noop = tmp_path / "oracle", tmp_path / "noop"
    done = bench(
        "run", *CLAW_TEST, "--limit", "6", "--agent", "oracle", "-k", "2", "-j", "2", "--out", str(oracle)
    )
    assert done.returncode == 0, done.stderr
    assert "12 episodes, 12 resolved" in done.stderr
    rows = outcomes(oracle)
    assert len(rows) == 12 and all(row[3] == 1 and row[4] == 1.0 for row in rows)
    lines = (oracle / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 12 and len({json.loads(line)["episode_id"] for line in lines}) == 12
    store = ResultsStore.open(oracle)
    assert store.config["agent"] == "oracle" and store.config["k"] == 2 and store.config["git_revision"]
    assert {e.metadata.task_id for e in store.episodes()} == {row[0] for row in rows}

    done = bench("run", *CLAW_TEST, "--limit", "6", "--agent", "noop", "-k", "2", "--out", str(noop))
    assert done.returncode == 0 and all(row[3] == 0 for row in outcomes(noop))


def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_results(tmp_path):
    args = [*CLAW_TEST, "--limit", "20", "--agent", "oracle", "-k", "3", "-j", "2"]
    baseline = tmp_path / "baseline"
    assert bench("run", *args, "--out", str(baseline)).returncode == 0
    expected = outcomes(baseline)
    assert len(expected) == 60

    killed = tmp_path / "killed"
    rng = random.Random(7)
    for _ in range(4):
        process = subprocess.Popen([*BENCH, "run", *args, "--out", str(killed)], stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.8, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = bench("run", *args, "--out", str(killed))
    assert finished.returncode == 0, finished.stderr
    assert outcomes(killed) == expected  # nothing lost, nothing twice
    lines = (killed / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 60


def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["run", *CLAW_TEST, "--limit", "20", "--agent", "oracle", "-k", "3", "--out", str(out)]
    process = subprocess.Popen([*BENCH, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and recorded(out) < 3:
        time.sleep(0.05)  # interrupt mid-run, once some episodes are in
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    partial = len(outcomes(out))
    assert len((out / "episodes.jsonl").read_text().splitlines()) == partial
    resumed = bench(*args)
    assert resumed.returncode == 0 and f"{partial} episodes already recorded" in resumed.stderr
    assert len(outcomes(out)) == 60


class FlakyFactory(EpisodeFactory):
    """The first env this factory makes loses its services on the first step: an infrastructure fault."""

    made = 0

    def env(self):
        env = super().env()
        FlakyFactory.made += 1
        if FlakyFactory.made == 1:

            def broken(action):
                raise SandboxError("the services went away")

            env.unwrapped.step = broken
        return env


def test_infra_faults_are_retried_on_a_fresh_env_and_counted(tmp_path):
    suite = load("claw-mini", "test")
    task = suite.tasks[0]
    factory = FlakyFactory(suite.env_id, suite.env_kwargs("test", [task.task_id]), "tool-calling", "oracle")
    results = []
    run_local([Job(task.task_id, 0)], factory, 1, lambda *r: results.append(r), threading.Event())
    ((_, episode, attempts),) = results
    assert attempts == 2 and episode.metadata.status == "submitted" and episode.metadata.resolved

    FlakyFactory.made = 0
    results.clear()
    run_local([Job(task.task_id, 0)], factory, 1, lambda *r: results.append(r), threading.Event(), 0)
    ((_, episode, attempts),) = results
    assert (
        attempts == 1 and episode.metadata.status == "infra_error" and "went away" in episode.metadata.error
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "swe-maxi", "--agent", "oracle"], "unknown suite 'swe-maxi'"),
        (["--suite", "claw-mini", "--agent", "orcale"], "did you mean 'oracle'?"),
        (["--suite", "claw-mini", "--agent", "oracle", "--harness", "reactt"], "did you mean 'react'?"),
        (["--suite", "claw-mini", "--agent", "oracle", "--tasks", "nope"], "no task 'nope'"),
        (
            ["--suite", "claw-mini", "--agent", "openai:m", "--option", "base_url=http://127.0.0.1:9/v1"],
            "cannot reach the model server",
        ),
        (["--suite", "swe-mini", "--agent", "noop", "--env-option", "max_steps=abc"], "max_steps='abc'"),
        (["--suite", "swe-mini", "--agent", "noop", "--env-option", "max_stepz=3"], "mean 'max_steps'"),
        (["--suite", "swe-mini", "--agent", "noop", "--env-option", "max_steps=0"], "at least 1"),
        (["--suite", "swe-mini", "--agent", "noop", "--backend", "dockr"], "did you mean 'docker'?"),
        (["--suite", "claw-mini", "--agent", "noop", "--backend", "docker"], "takes no backend"),
        (["--suite", "claw-mini", "--agent", "hf:ckpt/nope-not-here"], "no such model folder: ckpt/nope"),
        (["--suite", "swe/nope.jsonl", "--agent", "noop"], "no such file: swe/nope.jsonl"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, args, message):
    out = tmp_path / "out"
    done = bench("run", *args, "--out", str(out))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not out.exists()


def test_a_refused_run_leaves_nothing_and_the_corrected_rerun_starts(tmp_path):
    out = tmp_path / "out"
    refused = bench(
        "run", *CLAW_TEST, "--limit", "1", "--agent", "noop", "--env-option", "nope=1", "--out", str(out)
    )
    assert refused.returncode == 2 and not out.exists()
    corrected = bench("run", *CLAW_TEST, "--limit", "1", "--agent", "noop", "--out", str(out))
    assert corrected.returncode == 0, corrected.stderr
    assert recorded(out) == 1


def test_an_existing_file_as_out_is_one_line_and_left_alone(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    for out in (target, target / "run"):
        done = bench("run", *CLAW_TEST, "--limit", "1", "--agent", "noop", "--out", str(out))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "is a file" in done.stderr
    assert target.read_text() == "mine"


def unprivileged(command: list[str]) -> list[str]:
    """`command` as a user that cannot write a 0o555 folder: root ignores the mode, so run as nobody."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    require(setpriv is not None, "running as root without setpriv: cannot drop to an unprivileged user")
    return [str(setpriv), "--reuid=65534", "--regid=65534", "--clear-groups", *command]


@pytest.fixture
def read_only_folder():
    """A 0o555 folder that an unprivileged user can reach (pytest's tmp_path is private to its owner)."""
    with tempfile.TemporaryDirectory(prefix="orchard-ro-") as top:
        os.chmod(top, 0o755)
        folder = Path(top) / "ro"
        folder.mkdir(mode=0o555)
        os.chmod(folder, 0o555)
        yield folder
        os.chmod(folder, 0o755)


def test_a_read_only_out_is_one_line_and_nothing_runs(read_only_folder):
    for out in (read_only_folder, read_only_folder / "run"):
        command = unprivileged(
            [*BENCH, "run", *CLAW_TEST, "--limit", "1", "--agent", "noop", "--out", str(out)]
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, cwd=read_only_folder.parent
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "cannot" in done.stderr
    assert list(read_only_folder.iterdir()) == []


def test_resume_from_another_folder_is_the_same_suite_file(tmp_path):
    from importlib import resources

    bundled = (resources.files("orchard_envs.tasks.claw") / "data" / "claw-mini.jsonl").read_text()
    rows = [line for line in bundled.splitlines() if json.loads(line)["split"] == "test"][:2]
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "my.jsonl").write_text("\n".join(rows) + "\n")
    args = ["run", "--agent", "noop", "--out", str(tmp_path / "run")]
    first = subprocess.run(
        [*BENCH, *args, "--suite", "suites/my.jsonl", "--limit", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    again = subprocess.run(
        [*BENCH, *args, "--suite", "my.jsonl"], capture_output=True, text=True, cwd=tmp_path / "suites"
    )
    assert again.returncode == 2 and "limit" in again.stderr  # the flags differ: still one identity check
    again = subprocess.run(
        [*BENCH, *args, "--suite", "my.jsonl", "--limit", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path / "suites",
    )
    assert again.returncode == 0 and "1 episodes already recorded" in again.stderr, again.stderr
    shown = subprocess.run(
        [*BENCH, "leaderboard", "run", "--suite", "suites/my.jsonl", "-f", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert shown.returncode == 0 and len(json.loads(shown.stdout)) == 1, shown.stderr


def test_an_incompatible_or_foreign_results_directory_is_left_untouched(tmp_path):
    old = tmp_path / "old"
    assert bench("run", *CLAW_TEST, "--limit", "1", "--agent", "noop", "--out", str(old)).returncode == 0
    with sqlite3.connect(old / "results.db") as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    before = dump(old)
    done = bench("run", *CLAW_TEST, "--limit", "1", "--agent", "noop", "--out", str(old))
    assert done.returncode == 2 and "incompatible orchard-bench" in done.stderr
    assert dump(old) == before

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    done = bench("run", *CLAW_TEST, "--agent", "noop", "--out", str(foreign))
    assert (
        done.returncode == 2
        and "not empty" in done.stderr
        and sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    )


def test_swe_oracle_and_the_embedded_model_through_orchard_bench(tmp_path):
    swe = tmp_path / "swe"
    done = bench(
        "run",
        "--suite",
        "swe-mini",
        "--split",
        "test",
        "--limit",
        "2",
        "--agent",
        "oracle",
        "--out",
        str(swe),
    )
    assert done.returncode == 0, done.stderr
    assert [row[3] for row in outcomes(swe)] == [1, 1]

    model = tmp_path / "smollm2"
    done = bench(
        "run",
        *CLAW_TEST,
        "--limit",
        "1",
        "--agent",
        "hf",
        "--option",
        "max_new_tokens=16",
        "--option",
        "device=cpu",
        "--harness-option",
        "max_turns=3",
        "--out",
        str(model),
    )
    assert done.returncode == 0, done.stderr
    (episode,) = ResultsStore.open(model).episodes()
    assert episode.metadata.model == "SmolLM2-135M-Instruct" and episode.turns
    assert all(turn.token_ids and turn.prompt_token_ids for turn in episode.turns)
