"""orchard-bench leaderboard, report and export over results directories built here with sqlite3.

The databases are written directly per the schema of docs/bench.md (not through ResultsStore), so these
tests pin the on-disk format the reader must accept: three good runs (two Claw, one SWE with an unfinished
task), plus an incompatible schema, an empty run and a damaged file that must each be one warning.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import require
from rich.console import Console
from typer.testing import CliRunner

from orchard_envs.cli_support import typer_app
from orchard_envs.episodes import Episode, EpisodeMetadata, read_episodes
from orchard_envs.leaderboard.commands import export, leaderboard, report
from orchard_envs.leaderboard.discovery import load_runs
from orchard_envs.leaderboard.export import export_run
from orchard_envs.leaderboard.report import render_report, write_report
from orchard_envs.leaderboard.table import format_runs
from orchard_envs.leaderboard.table import leaderboard as leaderboard_view

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE results (
    task_id TEXT NOT NULL, trial INTEGER NOT NULL, status TEXT NOT NULL, resolved INTEGER,
    reward REAL NOT NULL, steps INTEGER NOT NULL, turns INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost REAL, seconds REAL NOT NULL, attempts INTEGER NOT NULL,
    category TEXT, split TEXT, error TEXT NOT NULL DEFAULT '', episode_id TEXT NOT NULL,
    episode TEXT NOT NULL, finished_at TEXT NOT NULL, PRIMARY KEY (task_id, trial)
);
"""
PATCH = "diff --git a/{task}.py b/{task}.py\n"
EVIL = "<b>m&'\"</b> | [red]x[/red]"  # a user-chosen model name: HTML, Markdown and rich markup at once


def config(suite: str, env_id: str, agent: str, model: str | None, k: int) -> dict[str, Any]:
    return {
        "suite": suite, "suite_version": "0" * 64, "env_id": env_id, "split": "test", "tasks": None,
        "limit": None, "k": k, "agent": agent, "agent_options": {}, "harness": "tool-calling",
        "harness_options": {}, "model": model, "sampling": {}, "env_options": {}, "max_infra_retries": 2,
        "git_revision": "abc", "versions": {"orchard_envs": "0.1.0"},
    }  # fmt: skip


def episode(cfg: dict, task: str, trial: int, resolved: bool | None, status: str, patch: Any) -> str:
    extra = {"patch": patch} if cfg["env_id"] == "orchard/SWE-v0" else {}
    meta = EpisodeMetadata(
        episode_id=f"{task}-{trial}", env_id=cfg["env_id"], suite=cfg["suite"], task_id=task, split="test",
        harness="tool-calling", agent=cfg["agent"], model=cfg["model"], seed=trial,
        reward=float(bool(resolved)), resolved=resolved, status=status, steps=2,
        tokens={"prompt": 100, "completion": 10}, **extra,
    )  # fmt: skip
    messages = [{"role": "user", "content": f"do {task}"}, {"role": "assistant", "content": "done"}]
    return json.dumps(Episode(messages=messages, metadata=meta).to_row())


def make_run(
    path: Path,
    cfg: dict[str, Any] | None,
    outcomes: dict[str, list[bool | None]],
    category: Callable[[str], str] = lambda task: task.split("-")[0],
    schema_version: str = "1",
    cost: float | None = None,
    turns: int = 3,
) -> Path:
    """A results directory: meta, then one results row (with its episode JSON) per (task, trial)."""
    path.mkdir(parents=True)
    db = sqlite3.connect(path / "results.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA)
    meta = {"schema_version": schema_version, "created_at": "2025-06-01T12:00:00+00:00", "config_hash": "h"}
    meta |= {"orchard_version": "0.1.0", "config": json.dumps(cfg)}
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    for task, results in outcomes.items():
        for trial, resolved in enumerate(results):
            status = "infra_error" if resolved is None else "submitted"
            patch = PATCH.format(task=task) if resolved is not None and trial % 2 == 0 else None
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task, trial, status, None if resolved is None else int(resolved), float(bool(resolved)),
                    2, turns, 100, 10, cost, 1.5, 1, category(task), "test", "", f"{task}-{trial}",
                    episode(cfg or {}, task, trial, resolved, status, patch), "2025-06-01T12:01:00+00:00",
                ),
            )  # fmt: skip
    db.commit()
    db.close()
    return path


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench") / "runs"
    claw = ("claw-mini", "orchard/Claw-v0")
    T, F = True, False
    make_run(
        root / "oracle-claw",
        config(*claw, "oracle", None, 3),
        {f"{family}-{i}": [T, T, T] for family in ("email", "calendar") for i in range(3)},
        turns=2,
    )
    make_run(
        root / "evil-claw",
        config(*claw, "openai", EVIL, 3),
        {"email-0": [T, F, T], "email-1": [F, F, F], "calendar-0": [T, T, None], "calendar-1": [F, T, F]},
        cost=0.01,
        turns=6,
    )
    make_run(  # one instance has only one of its two trials: complete=False
        root / "swe" / "my-model-swe",
        config("swe-mini", "orchard/SWE-v0", "openai", "my-model", 2),
        {"attrs__attrs-1": [T, F], "attrs__attrs-2": [F, F], "click__click-1": [T]},
        category=lambda task: task.split("-")[0].replace("__", "/"),
        turns=9,
    )
    make_run(root / "old", config(*claw, "noop", None, 1), {"email-0": [F]}, schema_version="99")
    make_run(root / "empty", config(*claw, "noop", None, 1), {})
    (root / "broken").mkdir()
    (root / "broken" / "results.db").write_bytes(b"this is not a database" * 100)
    (root / "not-a-run").mkdir()
    return root


def warnings_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    seen: list[str] = []
    return call(*args, warn=seen.append, **kwargs), seen


# ---------------------------------------------------------------- discovery and the table


def test_every_unreadable_run_is_one_warning_and_the_rest_are_read(runs_dir: Path) -> None:
    runs, warned = warnings_of(load_runs, [runs_dir])
    assert sorted(run.name for run in runs) == ["evil-claw", "oracle-claw", "swe/my-model-swe"]
    assert len(warned) == 3 and all("\n" not in line for line in warned)
    joined = "\n".join(warned)
    assert all(line.startswith("skipped: ") or ": skipped: " in line for line in warned)
    assert all(line.count(str(runs_dir)) == 1 for line in warned)  # each names its directory once
    assert re.search(r"old\b.*incompatible.*schema 99", joined)
    assert "empty: skipped: no finished episodes" in joined
    assert re.search(r"broken/results.db is not a readable results database", joined)
    _, missing = warnings_of(load_runs, [runs_dir / "nowhere"])
    assert missing == [f"{runs_dir / 'nowhere'}: no such directory"]
    assert [run.name for run in load_runs([runs_dir / "oracle-claw"])] == ["oracle-claw"]


def test_leaderboard_ranks_by_pass_at_k_then_any_column(runs_dir: Path) -> None:
    ranked, _ = warnings_of(leaderboard_view, [runs_dir], None, "pass@k", "json")
    records = json.loads(ranked)
    assert [r["name"] for r in records] == ["oracle-claw", "evil-claw", "swe/my-model-swe"]
    scores = [r["pass_at_k"] for r in records]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    assert records[0]["model"] == "oracle" and records[1]["model"] == EVIL  # no model: the agent's name

    def order(sort: str, **kwargs: Any) -> list[str]:
        text, _ = warnings_of(leaderboard_view, [runs_dir], None, sort, "json", **kwargs)
        return [r["name"] for r in json.loads(text)]

    # ranked within each suite (claw-mini, then swe-mini), unless asked for one ranking of all
    assert order("turns") == ["evil-claw", "oracle-claw", "swe/my-model-swe"]
    assert order("turns", by_suite=False) == ["swe/my-model-swe", "evil-claw", "oracle-claw"]
    assert order("Turns", ascending=True) == ["oracle-claw", "evil-claw", "swe/my-model-swe"]
    assert order("name", by_suite=False) == ["evil-claw", "oracle-claw", "swe/my-model-swe"]
    assert order("cost")[0] == "evil-claw"  # the only known cost; unknown ones sort last
    assert order("cost", ascending=True)[0] == "evil-claw"
    assert order("infra-error rate")[0] == "evil-claw"
    only_swe, _ = warnings_of(leaderboard_view, [runs_dir], "swe-mini", "pass_at_k", "json")
    assert [r["name"] for r in json.loads(only_swe)] == ["swe/my-model-swe"]
    with pytest.raises(Exception, match="unknown sort column 'bogus'"):
        leaderboard_view([runs_dir], None, "bogus", "json")


def test_numbers_follow_the_definitions_and_intervals_hold_the_estimate(runs_dir: Path) -> None:
    records = {r["name"]: r for r in json.loads(format_runs(load_runs([runs_dir]), fmt="json"))}
    evil = records["evil-claw"]
    assert (evil["tasks"], evil["episodes"], evil["k"], evil["complete"]) == (4, 12, 3, True)
    assert evil["success_rate"] == pytest.approx(5 / 12)
    assert evil["pass_at_k"] == pytest.approx(3 / 4)  # n=k=3: solved at least once
    assert evil["pass_hat_k"] == 0.0
    assert evil["infra_error_rate"] == pytest.approx(1 / 12)
    assert evil["total_cost"] == pytest.approx(0.12) and evil["mean_tokens"] == 110
    assert evil["per_category"] == {"calendar": pytest.approx(3 / 6), "email": pytest.approx(2 / 6)}
    swe = records["swe/my-model-swe"]
    assert not swe["complete"] and swe["total_cost"] is None
    assert swe["pass_at_k"] == pytest.approx((1 + 0 + 1) / 3)  # click-1 used k' = 1
    for record in records.values():
        for key in ("success_rate", "pass_at_k", "pass_hat_k"):
            low, high = record[f"{key}_ci"]
            assert 0.0 <= low <= record[key] <= high <= 1.0, (record["name"], key)


def test_csv_markdown_and_terminal_formats(runs_dir: Path) -> None:
    runs = load_runs([runs_dir])
    table = list(csv.DictReader(io.StringIO(format_runs(runs, fmt="csv"))))
    assert [row["name"] for row in table] == ["oracle-claw", "evil-claw", "swe/my-model-swe"]
    assert [row["rank"] for row in table] == ["1", "2", "1"]  # within its suite
    assert float(table[1]["pass_at_k"]) == pytest.approx(0.75)
    assert float(table[1]["pass_at_k_low"]) <= 0.75 <= float(table[1]["pass_at_k_high"])
    assert table[1]["model"] == EVIL and table[0]["total_cost"] == ""

    markdown = format_runs(runs, fmt="md").splitlines()
    assert len(markdown) == 2 + 3 and markdown[1].startswith("|---:|---|")
    cells = [re.split(r"(?<!\\)\|", line)[1:-1] for line in markdown]
    assert {len(row) for row in cells} == {len(cells[0])}  # the pipe in the model name is escaped
    assert cells[3][0].strip() == "2" and cells[3][11].strip().startswith("0.750 [")
    assert "0.667* [" in markdown[4]  # the incomplete run is marked
    assert "&lt;b&gt;m&amp;'\"&lt;/b&gt; \\| [red]x[/red]" in markdown[3]  # shown as typed, not as HTML

    console = Console(record=True, width=300)
    console.print(format_runs(runs, fmt="table"))
    shown = console.export_text()
    assert "oracle-claw" in shown and "[red]x[/red]" in shown  # user text is not read as markup
    assert "fewer than k trials" in shown
    with pytest.raises(Exception, match="unknown format"):
        format_runs(runs, fmt="xml")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def bench() -> typer.Typer:
    """The three commands on an app of their own, the way cli.py registers them."""
    app = typer_app("orchard-bench", "test")
    for command in (leaderboard, report, export):
        app.command()(command)
    return app


def invoke(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_commands_print_tables_and_warnings_and_fail_in_one_line(bench: typer.Typer, runs_dir: Path) -> None:
    done = invoke(bench, "leaderboard", runs_dir, "--format", "json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)[0]["name"] == "oracle-claw"
    assert done.stderr.count("orchard-bench: warning:") == 3
    table = invoke(bench, "leaderboard", runs_dir, "--sort", "turns")
    assert table.exit_code == 0 and "swe/my-model-swe" in table.stdout
    for args, message in [
        (("leaderboard", runs_dir / "not-a-run"), "no readable runs under"),
        (("leaderboard", runs_dir, "--sort", "bogus"), "unknown sort column 'bogus'"),
        (("leaderboard", runs_dir, "-f", "xml"), "unknown format 'xml'"),
        (("leaderboard", runs_dir, "--suite", "nope"), "no readable runs of suite 'nope'"),
        (("export", runs_dir / "oracle-claw", "--format", "swebench"), "needs a SWE run"),
        (("export", runs_dir / "old", "--format", "jsonl"), "incompatible"),
        (("export", runs_dir / "not-a-run", "--format", "jsonl"), "holds no results.db"),
        (("export", runs_dir / "oracle-claw", "--format", "parquet"), "unknown export format"),
    ]:
        failed = invoke(bench, *args)
        errors = [line for line in failed.stderr.splitlines() if "warning" not in line]
        assert failed.exit_code == 2, (args, failed.output)
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in failed.output, errors


def test_export_swebench_writes_one_prediction_per_instance(
    bench: typer.Typer, runs_dir: Path, tmp_path: Path
) -> None:
    done = invoke(bench, "export", runs_dir / "swe" / "my-model-swe", "--format", "swebench")
    assert done.exit_code == 0, done.output
    preds = json.loads((runs_dir / "swe" / "my-model-swe" / "preds.json").read_text())
    assert preds == [
        {"instance_id": task, "model_name_or_path": "my-model", "model_patch": PATCH.format(task=task)}
        for task in ("attrs__attrs-1", "attrs__attrs-2", "click__click-1")
    ]
    second = export_run(runs_dir / "swe" / "my-model-swe", "swebench", tmp_path / "t1.json", trial=1)
    assert (second.written, second.missing) == (2, 1)  # click__click-1 has no trial 1
    assert [p["model_patch"] for p in json.loads(second.path.read_text())] == [None, None]  # no patch made
    swe = runs_dir / "swe" / "my-model-swe"
    said = invoke(bench, "export", swe, "-f", "swebench", "--trial", "1", "--out", tmp_path / "x.json")
    assert "2 predictions" in said.stdout and "1 instances have no trial 1" in said.stdout
    lines = export_run(runs_dir / "evil-claw", "jsonl", tmp_path / "episodes.jsonl")
    episodes = list(read_episodes(lines.path))
    assert lines.written == len(episodes) == 12 and episodes[0].metadata.model == EVIL


# ---------------------------------------------------------------- the HTML report


def test_report_is_self_contained_and_escaped(runs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    runs, warned = warnings_of(write_report, [runs_dir], out)
    html = out.read_text()
    assert len(runs) == 3 and len(warned) == 3
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(|@import|<link|<iframe|<object|<embed", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert EVIL not in html and "&lt;b&gt;m&amp;&#x27;&quot;&lt;/b&gt;" in html
    assert html.count('<svg class="chart"') == 4  # claw and swe categories, scatter, pass@k curves
    assert "Content-Security-Policy" in html and "no finished episodes" in html
    assert "No runs found" in render_report([])


def test_report_renders_in_headless_chromium(runs_dir: Path, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require(sync_playwright is not None, "playwright is not installed (pip install playwright)")
    require(CHROMIUM.exists() or shutil.which("chromium") is not None, "chromium is not installed")
    out = tmp_path / "report.html"
    write_report([runs_dir], out)
    requests: list[str] = []
    with sync_playwright() as playwright:  # type: ignore[misc]
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a laptop screen
            page.on("request", lambda request: requests.append(request.url))
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(out.as_uri())

            def names_now() -> list[str]:
                cells = page.locator("table.board tbody tr td:nth-child(2)").all_inner_texts()
                return [cell.strip() for cell in cells]

            assert names_now() == ["oracle-claw", "evil-claw", "swe/my-model-swe"]
            assert page.locator("table.board").count() == 2  # one per suite
            # every column, Tokens, Cost and Infra included, is on screen: no horizontal scroll
            assert page.evaluate("document.documentElement.scrollWidth") <= 1400
            rights = page.evaluate(
                "[...document.querySelectorAll('table.board th')].map(th => th.getBoundingClientRect().right)"
            )
            assert max(rights) <= 1400, rights
            assert page.locator("svg.chart").count() == 4
            assert page.locator("svg.chart rect.bar").count() > 0
            assert page.locator("svg[data-chart=scatter] circle.point").count() == 3
            assert page.locator("svg[data-chart=curves] polyline.curve").count() == 3
            assert page.locator("b").count() == 0  # the model's <b> stayed text
            page.locator("th[data-key=mean_turns]").first.click()  # sort claw-mini's table by turns
            assert names_now() == ["evil-claw", "oracle-claw", "swe/my-model-swe"]
            page.locator("th[data-key=mean_turns]").first.click()
            assert names_now()[0] == "oracle-claw"
            page.locator("th[data-key=pass_at_k]").first.click()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)
            page.get_by_role("link", name="evil-claw").click()  # a row's link: its run's episodes
            page.get_by_role("link", name="view").first.click()
            assert "turn 1: assistant" in page.inner_text("body")
            assert not errors, errors
        finally:
            browser.close()
    assert requests[0] == out.as_uri() and len(requests) == 3, requests  # the report, then two clicks
    episodes = (tmp_path / "report-episodes").as_uri()
    assert all(url.startswith(episodes) for url in requests[1:]), requests  # nothing else was loaded
    assert (ARTIFACTS / "leaderboard.png").stat().st_size > 10_000


def test_runs_written_by_the_results_store_are_read(tmp_path: Path) -> None:
    from orchard_envs.leaderboard.store import ResultsStore

    cfg = config("swe-mini", "orchard/SWE-v0", "oracle", None, 2)
    store = ResultsStore.create_or_resume(tmp_path / "runs" / "stored", cfg)
    try:
        for trial, resolved in enumerate([True, False]):
            text = episode(cfg, "attrs__attrs-1", trial, resolved, "submitted", "d\n")
            made = Episode.from_row(json.loads(text))
            assert store.record("attrs__attrs-1", trial, made, attempts=1, category="attrs/attrs")
    finally:
        store.close()
    (run,) = load_runs([tmp_path / "runs"])
    assert (run.name, run.summary.pass_at_k) == ("stored", 1.0)
    assert run.summary.trials == {"attrs__attrs-1": (2, 1)}
    preds = export_run(run.path, "swebench")
    assert json.loads(preds.path.read_text()) == [
        {"instance_id": "attrs__attrs-1", "model_name_or_path": "oracle", "model_patch": "d\n"}
    ]
