"""What a run is: its weights and sampling in the identity, one process per run folder, a harness cut
that is not an env truncation, and resolves the grader doubts counted apart.

The checkpoint tests save a real tiny checkpoint (the `tiny_model` fixture), run `orchard-bench` on it,
retrain it (change its weights) and resume; the lock tests hold the lock in a real second process.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from orchard_envs.agents.base import Agent, AssistantTurn
from orchard_envs.episodes import Episode, EpisodeMetadata
from orchard_envs.episodes.schema import STATUSES, Status
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.leaderboard.discovery import load_runs
from orchard_envs.leaderboard.fingerprint import checkpoint_digest, model_weights, served_weights
from orchard_envs.leaderboard.stats import summarize
from orchard_envs.leaderboard.store import LOCK_NAME, ResultsStore, RunLock
from orchard_envs.leaderboard.table import format_runs
from orchard_envs.runner import run_episode
from orchard_envs.tasks.claw.task import load_suite

BENCH = [sys.executable, "-m", "orchard_envs.leaderboard.cli"]
CLAW_ONE = ["run", "--suite", "claw-mini", "--split", "test", "--limit", "1"]


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=timeout)


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path / "results.db") as db:
        return list(db.iterdump())


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The refusal: exit 2, no traceback, one error line, the last (transformers' loading bar may precede)."""
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("orchard-bench: error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert errors == lines[-1:], done.stderr
    return errors[0]


def config(**overrides: Any) -> dict[str, Any]:
    base = {
        "suite": "claw-mini", "suite_version": "0" * 64, "env_id": "orchard/Claw-v0", "split": "test",
        "tasks": None, "limit": None, "k": 1, "agent": "hf", "agent_options": {"model": "ckpt/a"},
        "harness": "tool-calling", "harness_options": {}, "env_options": {}, "model": "ckpt/a",
        "weights": {"source": "local", "sha256": "a" * 64, "files": 3, "bytes": 10},
        "sampling": {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0},
    }  # fmt: skip
    return base | overrides


# ---------------------------------------------------------------- weights in the identity


def write_checkpoint(folder: Path, weights: bytes = b"\0" * 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "tokenizer.json").write_text('{"vocab": {}}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_the_checkpoint_hash_covers_content_names_and_sizes_not_bookkeeping(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt")
    first = checkpoint_digest(folder)
    assert first["files"] == 3 and first["bytes"] == 64 + len('{"model_type": "llama"}') + 13
    # training bookkeeping beside the checkpoint (logs, optimizer state, the resumable state folder)
    (folder / "metrics.jsonl").write_text('{"loss": 1}\n')
    (folder / "orchard_train.json").write_text("{}")
    (folder / "optimizer.pt").write_bytes(b"x")
    (folder / "state").mkdir()
    (folder / "state" / "progress.json").write_text("{}")
    assert checkpoint_digest(folder) == first
    # one byte of the weights changed, size unchanged: only the content can tell
    (folder / "model.safetensors").write_bytes(b"\0" * 63 + b"\1")
    changed = checkpoint_digest(folder)
    assert changed["sha256"] != first["sha256"] and changed["bytes"] == first["bytes"]
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    assert checkpoint_digest(folder) == first
    (folder / "generation_config.json").write_text('{"temperature": 0.7}')  # a config file counts too
    assert checkpoint_digest(folder)["sha256"] != first["sha256"]


def test_weights_of_a_local_folder_and_a_scripted_agent(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt")

    class Local:
        model = str(folder)

    assert model_weights(Local()) == {"source": "local", **checkpoint_digest(folder)}
    assert model_weights(type("Scripted", (), {"model": ""})()) is None


class Cards(http.server.BaseHTTPRequestHandler):
    """/v1/models as vLLM answers it (a `root` naming the weights, a `created` reset at every start)."""

    def do_GET(self) -> None:
        card = {"id": "m", "object": "model", "created": 123, "owned_by": "vllm", "root": "/ckpt/m"}
        body = json.dumps({"object": "list", "data": [{"id": "other", "object": "model"}, card]}).encode()
        found = self.path == "/v1/models"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_served_model_is_its_servers_card_without_created():
    import openai

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cards)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        served = type("Served", (), {})()
        served.model = "m"
        served.client = openai.OpenAI(api_key="EMPTY", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
        assert model_weights(served) == {"source": "served", "id": "m", "root": "/ckpt/m"}
        nowhere = openai.OpenAI(api_key="EMPTY", base_url=f"http://127.0.0.1:{port}/nothing", max_retries=0)
        assert served_weights("m", nowhere) == {"source": "served", "id": "m"}  # a server with no /models
    finally:
        server.shutdown()
        server.server_close()


def retrain(folder: Path) -> None:
    """A new training run into the same folder: same files and sizes, different weights."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(folder)


def test_resuming_onto_a_retrained_checkpoint_is_refused(tiny_model, tmp_path):
    ckpt, out = tmp_path / "ckpt" / "mine", tmp_path / "out"
    shutil.copytree(tiny_model, ckpt)
    args = [*CLAW_ONE, "--agent", f"hf:{ckpt}", "--option", "max_new_tokens=4", "--option", "device=cpu"]
    args += ["--harness-option", "max_turns=1", "--out", str(out)]
    done = bench(*args)
    assert done.returncode == 0, done.stderr
    recorded = ResultsStore.open(out).config["weights"]
    assert recorded["source"] == "local" and recorded["files"] >= 3
    assert bench(*args).returncode == 0  # the same weights: resumes (nothing left to run)

    retrain(ckpt)
    before = dump(out)
    line = one_error_line(bench(*args))
    assert "the model's weights differ" in line and "another --out" in line
    assert recorded["sha256"][:12] in line
    assert dump(out) == before


def test_resuming_with_other_sampling_or_weights_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    ResultsStore.create_or_resume(out, config()).close()
    hotter = config(sampling={"max_new_tokens": 16, "temperature": 0.7, "top_p": 1.0})
    with pytest.raises(ConfigError) as refused:
        ResultsStore.create_or_resume(out, hotter)
    message = str(refused.value)
    assert "the sampling differs: temperature: 0.0 there, 0.7 now" in message and "\n" not in message
    assert "--out" in message
    retrained = config(weights={"source": "local", "sha256": "b" * 64, "files": 3, "bytes": 10})
    with pytest.raises(ConfigError, match=r"the model's weights differ: sha256 a{12} .* sha256 b{12}"):
        ResultsStore.create_or_resume(out, retrained)
    ResultsStore.create_or_resume(out, config()).close()  # the recorded run itself still resumes

    old, unrecorded = tmp_path / "old", config()
    del unrecorded["weights"]  # a run recorded before weights were: it cannot be checked, so refused
    ResultsStore.create_or_resume(old, unrecorded).close()
    with pytest.raises(ConfigError, match="the model's weights differ: no weights recorded there"):
        ResultsStore.create_or_resume(old, config())


# ---------------------------------------------------------------- one process per run folder


# Resumes the run in argv[1] as `orchard-bench run` would (the same config), then holds it, as a run does
# while its episodes play.
HOLDER = """
import sys, pathlib
from orchard_envs.leaderboard.store import ResultsStore
out = pathlib.Path(sys.argv[1])
store = ResultsStore.create_or_resume(out, ResultsStore.open(out).config)
print("holding", flush=True)
sys.stdin.read()
"""


def recorded(out: Path) -> int:
    with sqlite3.connect(out / "results.db") as db:
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_a_second_process_on_the_same_out_is_refused_until_the_first_ends(tmp_path):
    out = tmp_path / "out"
    assert bench(*CLAW_ONE, "--agent", "noop", "--out", str(out)).returncode == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    more = [*CLAW_ONE, "--agent", "noop", "-k", "2", "--out", str(out)]  # one more trial to run
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        line = one_error_line(bench(*more))
        assert f"is in use by another orchard-bench run (pid {holder.pid})" in line
        assert recorded(out) == 1  # the second process ran nothing
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed holder: the kernel drops its lock
        holder.wait(timeout=30)
    done = bench(*more)
    assert done.returncode == 0, done.stderr
    assert recorded(out) == 2


def test_the_lock_is_per_open_file_and_released_by_close_and_by_a_refusal(tmp_path):
    out = tmp_path / "out"
    first = ResultsStore.create_or_resume(out, config())
    with pytest.raises(ConfigError, match=rf"in use by another orchard-bench run \(pid {os.getpid()}\)"):
        ResultsStore.create_or_resume(out, config())  # a second open file description, same process
    with pytest.raises(ConfigError, match="in use"):
        RunLock(out)
    first.close()
    with pytest.raises(ConfigError, match="different run"):
        ResultsStore.create_or_resume(out, config(k=1, harness="react"))
    RunLock(out).release()  # the refused resume let go of the lock
    ResultsStore.create_or_resume(out, config()).close()
    assert (out / LOCK_NAME).is_file()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / LOCK_NAME).write_text("")  # a lock file left by a crashed first start: still an empty run folder
    ResultsStore.create_or_resume(fresh, config()).close()


# ---------------------------------------------------------------- the harness's turn cut


class Lister(Agent):
    """Lists forever, so only a limit ends its episodes."""

    name = "lister"

    def __init__(self, tool: str) -> None:
        self.tool = tool

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        return AssistantTurn(content=f'<tool_call>{{"name": "{self.tool}", "arguments": {{}}}}</tool_call>')


def test_the_harness_cut_is_turn_limit_and_the_env_truncation_step_limit():
    assert set(STATUSES) == set(Status.__args__) and "turn_limit" in STATUSES
    task = next(t for t in load_suite("claw-mini") if "todo_list" in t.tools)
    env = gym.make("orchard/Claw-v0", suite="claw-mini")
    try:
        cut = run_episode(env, get_harness("react", max_turns=2), Lister("todo_list"), task_id=task.task_id)
        truncated = run_episode(env, get_harness("react"), Lister("todo_list"), task_id=task.task_id)
    finally:
        env.close()
    assert (cut.metadata.status, cut.metadata.steps, cut.metadata.resolved) == ("turn_limit", 2, None)
    assert (truncated.metadata.status, truncated.metadata.resolved) == ("step_limit", False)
    assert Episode.from_row(json.loads(json.dumps(cut.to_row()))).metadata.status == "turn_limit"


# ---------------------------------------------------------------- suspicious resolves


def episode(task: str, resolved: bool | None, status: str = "submitted", **extra: Any) -> Episode:
    meta = EpisodeMetadata(
        env_id="orchard/SWE-v0", suite="swe-mini", task_id=task, harness="tool-calling", agent="openai",
        model="m", reward=float(bool(resolved)), resolved=resolved, status=status, **extra,
    )  # fmt: skip
    messages = [{"role": "user", "content": f"fix {task}"}, {"role": "assistant", "content": "done"}]
    return Episode(messages=messages, metadata=meta)


def test_suspicious_resolves_and_turn_cuts_have_their_own_columns(tmp_path):
    runs = tmp_path / "runs"
    store = ResultsStore.create_or_resume(runs / "flagged", config(k=1))
    recorded = {
        "a": episode("a", True, suspicious=["diff imports _pytest internals", "a canary test passed"]),
        "b": episode("b", True, suspicious=[]),  # the grader looked and found nothing
        "c": episode("c", False, suspicious=["os._exit in the diff"]),  # doubted but not resolved: no count
        "d": episode("d", True, suspicious="writes to the report path"),  # one reason as text
        "e": episode("e", None, status="turn_limit"),
        "f": episode("f", False, status="step_limit"),
        "g": episode("g", True),  # a grader that records no flag at all
    }
    for task, ep in recorded.items():
        assert store.record(task, 0, ep, attempts=1, category="x")
    rows = {row["task_id"]: row for row in store.rows()}
    store.close()
    assert rows["a"]["suspicious"] == ["diff imports _pytest internals", "a canary test passed"]
    assert rows["d"]["suspicious"] == ["writes to the report path"] and rows["g"]["suspicious"] == []

    summary = summarize(list(rows.values()), k=1)
    assert (summary.suspicious_resolves, summary.success_rate) == (2, 4 / 7)  # still resolved, counted apart
    assert summary.turn_limit_rate == pytest.approx(1 / 7)
    assert summary.statuses == {"step_limit": 1, "submitted": 5, "turn_limit": 1}

    (run,) = load_runs([runs])
    (record,) = json.loads(format_runs([run], fmt="json"))
    assert (record["suspicious_resolves"], record["turn_limit_rate"]) == (2, pytest.approx(1 / 7))
    header, line = format_runs([run], fmt="csv").splitlines()
    fields = dict(zip(header.split(","), line.split(","), strict=True))
    assert (fields["suspicious_resolves"], fields["turn_limit_rate"]) == ("2", str(1 / 7))
    markdown = format_runs([run], fmt="md")
    assert "| Suspicious |" in markdown and "| 0.143 | 2 |" in markdown
    assert [r["name"] for r in json.loads(format_runs([run], sort="suspicious", fmt="json"))] == ["flagged"]


def test_suspicious_is_read_from_reward_breakdown_too(tmp_path):
    store = ResultsStore.create_or_resume(tmp_path / "run", config())
    assert store.record("a", 0, episode("a", True), attempts=1, category=None)
    store.close()
    with sqlite3.connect(tmp_path / "run" / "results.db") as db:  # a grader that put its reasons there
        (text,) = db.execute("SELECT episode FROM results").fetchone()
        row = json.loads(text)
        row["reward_breakdown"] = {"tests": 1.0, "suspicious": ["sys.settrace in the diff"]}
        db.execute("UPDATE results SET episode = ?", (json.dumps(row),))
    (found,) = ResultsStore.open(tmp_path / "run").rows()
    assert found["suspicious"] == ["sys.settrace in the diff"]
