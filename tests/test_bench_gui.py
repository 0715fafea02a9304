"""`orchard-bench run` on the GUI suites end to end: real Chromium (web-mini), real Xvfb and apps
(desktop-mini), the oracle, noop and the embedded model, episodes stored with their screenshots."""

from __future__ import annotations

import shutil

import pytest
from conftest import require
from test_bench_run import bench, outcomes
from test_desktop_env import APPS

from orchard_envs.episodes.store import load_dataset
from orchard_envs.leaderboard.store import ResultsStore
from orchard_envs.leaderboard.suites import load
from orchard_envs.web.runtime import find_chromium

WEB_TEST = ["--suite", "web-mini", "--split", "test"]


@pytest.fixture(scope="module", autouse=True)
def chromium() -> None:
    require(find_chromium() is not None, "Chromium is not installed (apt-get install chromium)")


def test_the_gui_suites_are_bundled() -> None:
    assert (load("web-mini").env_id, len(load("web-mini").tasks)) == ("orchard/Web-v0", 144)
    assert load("miniwob").env_id == "orchard/Web-v0" and len(load("miniwob").tasks) >= 100
    assert (load("desktop-mini").env_id, len(load("desktop-mini").tasks)) == ("orchard/Desktop-v0", 64)
    assert {t.split for t in load("web-mini", "test").tasks} == {"test"}


def test_web_mini_oracle_and_noop_through_orchard_bench(tmp_path) -> None:
    oracle, noop = tmp_path / "oracle", tmp_path / "noop"
    done = bench("run", *WEB_TEST, "--limit", "3", "--agent", "oracle", "-j", "2", "--out", str(oracle))
    assert done.returncode == 0, done.stderr
    assert [row[3:5] for row in outcomes(oracle)] == [(1, 1.0)] * 3
    done = bench("run", *WEB_TEST, "--limit", "3", "--agent", "noop", "--out", str(noop))
    assert done.returncode == 0, done.stderr
    assert [row[4] for row in outcomes(noop)] == [0.0] * 3


def test_the_embedded_model_on_the_ax_tree_through_orchard_bench(tmp_path) -> None:
    run = tmp_path / "smollm2"
    options = ["--option", "max_new_tokens=16", "--option", "device=cpu", "--harness-option", "max_turns=2"]
    done = bench("run", *WEB_TEST, "--limit", "1", "--agent", "hf", *options, "--out", str(run), timeout=600)
    assert done.returncode == 0, done.stderr
    (episode,) = ResultsStore.open(run).episodes()
    assert episode.metadata.model == "SmolLM2-135M-Instruct" and episode.turns
    assert all(turn.token_ids and turn.prompt_token_ids for turn in episode.turns)
    assert "[" in str(episode.messages[1]["content"])  # the AX tree with its element ids, as text


def test_screenshots_of_a_gui_harness_run_load_as_images(tmp_path) -> None:
    run = tmp_path / "gui"
    done = bench("run", *WEB_TEST, "--limit", "1", "--agent", "noop", "--harness", "gui", "--out", str(run))
    assert done.returncode == 0, done.stderr
    dataset = load_dataset(run / "episodes.jsonl", images=True, cache_dir=str(tmp_path / "cache"))
    (row,) = list(dataset)
    assert row["images"] and row["images"][0].size == (1280, 720)


def test_desktop_mini_oracle_and_noop_through_orchard_bench(tmp_path) -> None:
    missing = [app for app in APPS if shutil.which(app) is None]
    require(not missing, f"the desktop needs {', '.join(missing)} (scripts/setup.sh installs them)")
    desktop = ["--suite", "desktop-mini", "--limit", "2"]
    run, noop = tmp_path / "desktop", tmp_path / "noop"
    done = bench("run", *desktop, "--agent", "oracle", "--out", str(run))
    assert done.returncode == 0, done.stderr
    assert [row[3:5] for row in outcomes(run)] == [(1, 1.0)] * 2
    done = bench("run", *desktop, "--agent", "noop", "--harness", "gui", "--out", str(noop))
    assert done.returncode == 0, done.stderr
    assert [row[4] for row in outcomes(noop)] == [0.0] * 2
    dataset = load_dataset(noop / "episodes.jsonl", images=True, cache_dir=str(tmp_path / "cache"))
    assert all(row["images"] and row["images"][0].size == (1024, 768) for row in dataset)
