"""`orchard-bench show`, the report's episode pages, the suite grouping, mean reward and valid tool calls.

Runs are written through the real ResultsStore, with transcripts shaped as the harnesses write them (native
tool calls and `tool` messages, text harnesses' `<tool_response>` user messages, format-error notes).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from orchard_envs.episodes import Episode, EpisodeMetadata
from orchard_envs.episodes.images import image_part, image_paths
from orchard_envs.leaderboard.cli import app
from orchard_envs.leaderboard.discovery import load_runs
from orchard_envs.leaderboard.report import write_report
from orchard_envs.leaderboard.stats import has_valid_tool_call
from orchard_envs.leaderboard.store import ResultsStore
from orchard_envs.leaderboard.table import format_runs

SYSTEM = {"role": "system", "content": "You are an agent."}
ASK = {"role": "user", "content": "Archive the email from Bob."}


def call(name: str, arguments: str, call_id: str = "c1") -> dict[str, Any]:
    function = {"name": name, "arguments": arguments}
    calls = [{"id": call_id, "type": "function", "function": function}]
    return {"role": "assistant", "content": None, "tool_calls": calls}


def answer(text: str, call_id: str = "c1") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


FORMAT_ERROR = [
    {"role": "assistant", "content": "I think so"},
    {"role": "user", "content": "Format error: reply with a tool call"},
]
GOOD = [
    call("list_emails", '{"folder": "inbox"}'),
    answer('[{"id": 7, "from": "bob"}]'),
    call("finish", '{"reply": "done"}', "c2"),
    answer("Your reply was sent to the user.", "c2"),
]
REFUSED = [
    call("list_emailz", "{}"),
    answer("Error: unknown tool 'list_emailz'; did you mean 'list_emails'?"),
]


def config(suite: str, agent: str, k: int = 2) -> dict[str, Any]:
    return {
        "suite": suite, "suite_version": "0" * 64, "env_id": "orchard/Claw-v0", "split": "test",
        "tasks": None, "limit": None, "k": k, "agent": agent, "agent_options": {}, "harness": "tool-calling",
        "harness_options": {}, "model": None, "weights": None, "sampling": {}, "env_options": {},
        "max_infra_retries": 2,
    }  # fmt: skip


def record(store: ResultsStore, task: str, trial: int, turns: list[dict], reward: float, steps: int) -> None:
    cfg = store.config
    meta = EpisodeMetadata(
        env_id="orchard/Claw-v0", suite=cfg["suite"], task_id=task, split="test", harness="tool-calling",
        agent=cfg["agent"], reward=reward, resolved=reward == 1.0, status="submitted", steps=steps,
        format_errors=sum(str(m["content"]).startswith("Format error") for m in turns if m["role"] == "user"),
        reward_breakdown={"checks": reward}, verify_status="passed" if reward == 1.0 else "failed",
    )  # fmt: skip
    episode = Episode(messages=[SYSTEM, ASK, *turns], metadata=meta)
    assert store.record(task, trial, episode, attempts=1, category=task.split("-")[0])


def make(root: Path, name: str, suite: str, agent: str, episodes: dict[tuple[str, int], tuple]) -> Path:
    store = ResultsStore.create_or_resume(root / name, config(suite, agent))
    try:
        for (task, trial), (turns, reward, steps) in episodes.items():
            record(store, task, trial, turns, reward, steps)
    finally:
        store.close()
    return root / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("show") / "runs"
    # the base model: every episode a format error or a refused call, no reward
    make(root, "base", "claw-mini", "hf", {
        ("email-1", 0): (FORMAT_ERROR, 0.0, 0), ("email-1", 1): (REFUSED, 0.0, 1),
        ("email-2", 0): (FORMAT_ERROR, 0.0, 0), ("email-2", 1): (FORMAT_ERROR, 0.0, 0),
    })  # fmt: skip
    # after SFT: still unresolved but the env runs its calls and partial credit shows
    make(root, "sft", "claw-mini", "hf", {
        ("email-1", 0): (GOOD, 0.5, 2), ("email-1", 1): (GOOD, 0.5, 2),
        ("email-2", 0): (REFUSED + GOOD, 0.25, 3), ("email-2", 1): (FORMAT_ERROR, 0.0, 0),
    })  # fmt: skip
    make(
        root,
        "oracle-swe",
        "swe-mini",
        "oracle",
        {("attrs-1", 0): (GOOD, 1.0, 2), ("attrs-1", 1): (GOOD, 1.0, 2)},
    )
    return root


def test_a_valid_tool_call_is_a_well_formed_call_the_env_ran() -> None:
    assert has_valid_tool_call([SYSTEM, ASK, *GOOD], steps=2)
    assert not has_valid_tool_call([SYSTEM, ASK, *FORMAT_ERROR], steps=0)  # the harness never parsed one
    assert not has_valid_tool_call([SYSTEM, ASK, *REFUSED], steps=1)  # the env refused the only call
    assert has_valid_tool_call([SYSTEM, ASK, *REFUSED, *GOOD], steps=3)
    text = [{"role": "assistant", "content": "<tool_call>{}</tool_call>"}]
    assert has_valid_tool_call(
        [ASK, *text, {"role": "user", "content": "<tool_response>\nok\n</tool_response>"}], 1
    )
    bad = {
        "role": "user",
        "content": "<tool_response>\nError: the action is not valid JSON\n</tool_response>",
    }
    assert not has_valid_tool_call([ASK, *text, bad], 1)
    assert has_valid_tool_call([ASK, *text, {"role": "user", "content": "Output:\nfile.py"}], 1)  # bash-only


def test_mean_reward_and_valid_calls_show_what_resolved_hides(runs: Path) -> None:
    records = {r["name"]: r for r in json.loads(format_runs(load_runs([runs]), fmt="json"))}
    base, sft = records["base"], records["sft"]
    assert base["success_rate"] == sft["success_rate"] == 0.0  # 0 resolved both: the old columns are equal
    assert (base["mean_reward"], base["valid_call_rate"]) == (0.0, 0.0)
    assert sft["mean_reward"] == pytest.approx(1.25 / 4) and sft["valid_call_rate"] == pytest.approx(3 / 4)
    for key, ci in (("mean_reward", "mean_reward_ci"), ("valid_call_rate", "valid_call_ci")):
        low, high = sft[ci]
        assert 0.0 <= low <= sft[key] <= high <= 1.0
    markdown = format_runs(load_runs([runs]), fmt="md")
    assert "| Reward [95% CI] | Valid calls |" in markdown
    assert re.search(r"\| 0\.312 \[0\.\d+, 0\.\d+\] \| 75% \|", markdown), markdown


def test_runs_are_ranked_within_their_suite(runs: Path) -> None:
    records = json.loads(format_runs(load_runs([runs]), sort="reward", fmt="json"))
    assert [(r["suite"], r["name"], r["rank"]) for r in records] == [
        ("claw-mini", "sft", 1), ("claw-mini", "base", 2), ("swe-mini", "oracle-swe", 1),
    ]  # fmt: skip
    together = json.loads(format_runs(load_runs([runs]), sort="reward", fmt="json", by_suite=False))
    assert [r["name"] for r in together] == ["oracle-swe", "sft", "base"]
    console = Console(record=True, width=400)
    console.print(format_runs(load_runs([runs]), fmt="table"))
    shown = console.export_text()
    assert "leaderboard: claw-mini" in shown and "leaderboard: swe-mini" in shown
    cli = CliRunner().invoke(app, ["leaderboard", str(runs), "--one-table", "-f", "csv"])
    assert cli.exit_code == 0 and [line.split(",")[0] for line in cli.stdout.splitlines()[1:]] == [
        "1",
        "2",
        "3",
    ]


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, ["show", *map(str, args), "--width", "120"])


def test_show_renders_turns_calls_observations_and_grading(runs: Path) -> None:
    done = invoke(runs / "sft", "--task", "email-2", "--trial", "0")
    assert done.exit_code == 0, done.output
    out = done.stdout
    for expected in ("email-2 (trial 0)", "turn 1: assistant", "list_emailz", "observation", "unknown tool",
                     "turn 3: assistant", '"folder": "inbox"', "grading", "reward", "0.250", "checks",
                     "valid tool call", "steps / format errors"):  # fmt: skip
        assert expected in out, expected
    assert out.index("list_emailz") < out.index("list_emails(") < out.index("grading")
    by_name = invoke("base", "--dir", runs)  # a leaderboard name, first task and trial by default
    assert by_name.exit_code == 0 and "email-1 (trial 0)" in by_name.stdout
    assert "format error (harness)" in by_name.stdout


def test_show_refuses_unknown_runs_tasks_and_trials_in_one_line(runs: Path) -> None:
    for args, message in [
        (("sfy", "--dir", runs), "unknown run 'sfy'; did you mean 'sft'?"),
        ((runs / "sft", "--task", "email-3"), "unknown task 'email-3'; did you mean 'email-2'?"),
        ((runs / "sft", "--task", "email-1", "--trial", "5"), "no finished trial 5; its trials: 0, 1"),
        (("nope", "--dir", runs / "missing"), "no run 'nope'"),
    ]:  # fmt: skip
        failed = invoke(*args)
        lines = failed.stderr.strip().splitlines()
        assert failed.exit_code == 2, failed.output
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in failed.output, lines


def test_each_report_row_links_to_its_runs_episodes(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report([runs], out)
    html = out.read_text()
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', html)
    assert sorted(name for _, name in links) == ["base", "oracle-swe", "sft"]
    for href, name in links:
        index = (out.parent / href).read_text()
        pages = re.findall(r'<a href="([^"]+\.html)">view</a>', index)
        assert len(pages) == (2 if name == "oracle-swe" else 4), name
        page = ((out.parent / href).parent / pages[0]).read_text()
        assert "turn 1: assistant" in page and "Grading" in page and "Content-Security-Policy" in page
    sft = dict((name, href) for href, name in links)["sft"]
    folder = (out.parent / sft).parent
    email2 = next(folder.glob("*email-2-0.html")).read_text()
    assert "list_emailz" in email2 and "&quot;folder&quot;: &quot;inbox&quot;" in email2  # escaped
    assert 'class="suite">claw-mini' in html and 'class="suite">swe-mini' in html
    # a second report replaces the episode pages whole: a run gone from the report leaves none behind
    write_report([runs / "base"], out)
    assert [p.name for p in (tmp_path / "report-episodes").iterdir()] == ["000-base"]


def test_a_runs_screenshots_are_kept_beside_its_episodes(tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    monkeypatch.setenv("ORCHARD_IMAGE_CACHE", str(tmp_path / "cache"))
    page = [{"type": "text", "text": "the page"}, image_part(np.zeros((4, 6, 3)))]
    shot = {"role": "user", "content": page}
    store = ResultsStore.create_or_resume(tmp_path / "run", config("web-mini", "oracle"))
    try:
        record(store, "click-1", 0, [call("click", "{}"), answer("clicked"), shot], 1.0, 1)
        store.export_episodes()
    finally:
        store.close()
    for cached in (tmp_path / "cache").rglob("*.png"):
        cached.unlink()  # the cache is scratch: the run folder must hold its own copy
    (line,) = (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()
    (path,) = image_paths(Episode.from_row(json.loads(line)).messages, tmp_path / "run")
    assert Path(path).read_bytes().startswith(b"\x89PNG")
