"""`orchard-bench run --executor ray` end to end, against a real Ray head on loopback started here.

The same SQLite store records the episodes whichever executor ran them, so a run killed on Ray resumes on
Ray or locally with the results of an uninterrupted local run.
"""

from __future__ import annotations

import importlib.util
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require
from test_bench_run import BENCH, CLAW_TEST, bench, outcomes, recorded

from orchard_envs.errors import ConfigError
from orchard_envs.leaderboard import ray_executor
from orchard_envs.leaderboard.ray_head import loopback_head
from orchard_envs.leaderboard.store import ResultsStore

HAS_RAY = importlib.util.find_spec("ray") is not None
NO_RAY = "ray is not installed (pip install 'orchard-envs[ray]')"
KILL_ARGS = [*CLAW_TEST, "--limit", "20", "--agent", "oracle", "-k", "3", "-j", "2"]
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A one-node Ray cluster (2 CPUs) for this module.

    It requires a token of its own, given to every run of this module through the environment: the
    cluster is what a user would run, and no token in ~/.ray (which Ray may pick up) can change it.
    """
    require(HAS_RAY, NO_RAY)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (RAY_AUTH | {"RAY_USAGE_STATS_ENABLED": "0"}).items():
            patch.setenv(name, value)
        patch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        with loopback_head(num_cpus=2) as address:
            yield address


def on_ray(address: str) -> list[str]:
    return ["--executor", "ray", "--ray-address", address]


def start(out: Path, *extra: str) -> subprocess.Popen:
    """The run that `kill_when` interrupts, in the background."""
    return subprocess.Popen([*BENCH, "run", *KILL_ARGS, "--out", str(out), *extra], stderr=subprocess.DEVNULL)


def kill_when(process: subprocess.Popen, out: Path, episodes: int) -> int:
    """SIGKILL `process` once `out` holds at least `episodes` results; how many it held then."""
    deadline = time.monotonic() + 180
    while recorded(out) < episodes and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return recorded(out)


def test_an_oracle_run_on_ray_records_every_episode(ray_head, tmp_path):
    out = tmp_path / "run"
    done = bench(
        "run", *CLAW_TEST, "--limit", "6", "--agent", "oracle", "-k", "2", "-j", "2", "--out", str(out),
        *on_ray(ray_head),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "12 episodes, 12 resolved" in done.stderr and "Traceback" not in done.stderr
    rows = outcomes(out)
    assert len(rows) == 12 and all(row[3] == 1 and row[4] == 1.0 for row in rows)
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 12
    assert ResultsStore.open(out).config["executor"] == "ray"


def test_killed_on_ray_resumes_on_ray_or_locally_with_the_uninterrupted_results(ray_head, tmp_path):
    baseline = tmp_path / "baseline"
    assert bench("run", *KILL_ARGS, "--out", str(baseline)).returncode == 0
    expected = outcomes(baseline)
    assert len(expected) == 60

    killed = tmp_path / "killed"  # Ray, killed; Ray again, killed; finished locally
    held = kill_when(start(killed, *on_ray(ray_head)), killed, 3)
    assert 3 <= held < 60
    assert held < kill_when(start(killed, *on_ray(ray_head)), killed, held + 3) < 60
    finished = bench("run", *KILL_ARGS, "--out", str(killed))
    assert finished.returncode == 0, finished.stderr
    assert outcomes(killed) == expected  # nothing lost, nothing twice
    assert len((killed / "episodes.jsonl").read_text().splitlines()) == 60

    moved = tmp_path / "moved"  # started locally, killed; finished on Ray
    held = kill_when(start(moved), moved, 3)
    assert 3 <= held < 60
    finished = bench("run", *KILL_ARGS, "--out", str(moved), *on_ray(ray_head))
    assert finished.returncode == 0, finished.stderr
    assert f"{held} episodes already recorded" in finished.stderr
    assert outcomes(moved) == expected


def test_an_unreachable_ray_address_is_one_line_and_creates_nothing(tmp_path):
    require(HAS_RAY, NO_RAY)
    out = tmp_path / "out"
    address = f"127.0.0.1:{free_port()}"
    done = bench("run", *CLAW_TEST, "--agent", "noop", "--out", str(out), *on_ray(address), timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"no Ray cluster answers at {address}" in done.stderr
    assert not out.exists()


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'orchard-envs\[ray\]'"):
        ray_executor.check_address("127.0.0.1:6379")


@pytest.mark.parametrize(
    "address, expected",
    [("10.0.0.5:6380", ("10.0.0.5", 6380)), ("head", ("head", 6379)), ("ray://head", ("head", 10001))],
)
def test_ray_addresses_parse_to_the_port_that_answers(address, expected):
    assert ray_executor._host_port(address) == expected
    with pytest.raises(ConfigError, match="not host:port"):
        ray_executor._host_port("head:port")
