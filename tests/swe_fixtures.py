"""A tiny real SWE instance ("calc") and helpers to write agent patches against it with real git.

The repository is a pure-Python library with one bug (`clamp` ignores its upper bound). Its tests, some
failing at the base commit (FAIL_TO_PASS) and some passing (PASS_TO_PASS), plus a test patch that adds
one more failing test in a new file, make an instance that `prepare` and `grade` treat like any other.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from orchard_envs.tasks.swe.instance import SWEInstance

GIT_ENV = {
    "GIT_AUTHOR_NAME": "calc dev",
    "GIT_AUTHOR_EMAIL": "dev@calc.invalid",
    "GIT_COMMITTER_NAME": "calc dev",
    "GIT_COMMITTER_EMAIL": "dev@calc.invalid",
    "GIT_AUTHOR_DATE": "2020-02-02T02:02:02+0000",
    "GIT_COMMITTER_DATE": "2020-02-02T02:02:02+0000",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}

CALC_BUGGY = '''\
"""calc: a few arithmetic helpers."""


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def clamp(x, lo, hi):
    """Limit x to the closed interval [lo, hi]."""
    return max(lo, min(x, lo))
'''
CALC_FIXED = CALC_BUGGY.replace("min(x, lo)", "min(x, hi)")

TEST_CALC = """\
import pytest

from calc import add, clamp, sub


def test_add():
    assert add(2, 3) == 5


def test_sub():
    assert sub(2, 3) == -1


def test_clamp_below():
    assert clamp(-5, 0, 10) == 0


def test_clamp_inside():
    assert clamp(5, 0, 10) == 5


def test_clamp_above():
    assert clamp(15, 0, 10) == 10


class TestClamp:
    def test_at_upper_bound(self):
        assert clamp(10, 0, 10) == 10

    def test_at_lower_bound(self):
        assert clamp(0, 0, 10) == 0


@pytest.mark.parametrize("x, expected", [(-1, 0), (3, 3)], ids=["below zero", "in [0, 10]"])
def test_clamp_param(x, expected):
    assert clamp(x, 0, 10) == expected
"""

TEST_EXTRA = """\
from calc import clamp


def test_clamp_narrow_interval():
    assert clamp(7, 0, 5) == 5
"""

SETUP_CFG = "[metadata]\nname = calc\n\n[tool:pytest]\ntestpaths = tests\n"

BASE_FILES = {
    "calc/__init__.py": CALC_BUGGY,
    "tests/test_calc.py": TEST_CALC,
    "setup.cfg": SETUP_CFG,
    "README.md": "# calc\n\nArithmetic helpers.\n",
}

T = "tests/test_calc.py::"
FAIL_TO_PASS = [
    f"{T}test_clamp_inside",
    f"{T}test_clamp_above",
    f"{T}TestClamp::test_at_upper_bound",
    f"{T}test_clamp_param[in [0, 10]]",
    "tests/test_extra.py::test_clamp_narrow_interval",
]
PASS_TO_PASS = [
    f"{T}test_add",
    f"{T}test_sub",
    f"{T}test_clamp_below",
    f"{T}TestClamp::test_at_lower_bound",
    f"{T}test_clamp_param[below zero]",
]


def git(repo: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    """Run git in `repo` with a fixed identity and no user configuration; return stdout."""
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=input,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write (str/bytes) or delete (None) files under root."""
    for name, data in files.items():
        path = root / name
        if data is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")


def init_repo(root: Path, files: Mapping[str, str | bytes]) -> str:
    """A fresh repository at `root` with `files` committed; returns the commit id."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "--no-gpg-sign", "-m", "base")
    return git(root, "rev-parse", "HEAD").strip()


def diff_of(repo: Path, files: Mapping[str, str | bytes | None], *flags: str) -> str:
    """The git diff (against HEAD, untracked included) that `files` would make; the repo is left as it was."""
    write_files(repo, files)
    git(repo, "add", "-A")
    try:
        return git(repo, "diff", "--cached", "--binary", "--no-color", *flags, "HEAD")
    finally:
        git(repo, "reset", "-q", "--hard", "HEAD")
        git(repo, "clean", "-qfdx")


class CalcRepo:
    """The calc repository on the host and a way to turn file edits into patches against its base."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = init_repo(root, BASE_FILES)
        self.gold_patch = self.patch({"calc/__init__.py": CALC_FIXED})
        self.test_patch = self.patch({"tests/test_extra.py": TEST_EXTRA})

    def patch(self, files: Mapping[str, str | bytes | None]) -> str:
        return diff_of(self.root, files)

    def instance(self, **overrides: object) -> SWEInstance:
        fields: dict[str, object] = {
            "instance_id": "calc__calc-1",
            "repo": "example/calc",
            "base_commit": self.base,
            "patch": self.gold_patch,
            "test_patch": self.test_patch,
            "problem_statement": "clamp() ignores its upper bound: clamp(15, 0, 10) returns 0.",
            "FAIL_TO_PASS": FAIL_TO_PASS,
            "PASS_TO_PASS": PASS_TO_PASS,
            "source": {"type": "git", "path": str(self.root)},
        }
        return SWEInstance.model_validate({**fields, **overrides})


def calc_with(prelude: str, fixed: bool = False) -> str:
    """The library source with `prelude` run first at import: where an agent's trick would hide."""
    return textwrap.dedent(prelude).strip("\n") + "\n\n\n" + (CALC_FIXED if fixed else CALC_BUGGY)


# A pytest plugin body that turns every failed test phase into a pass (what a gaming agent wants loaded).
OUTCOME_REWRITER = """\
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.outcome != "passed":
        report.outcome = "passed"
        report.longrepr = None
"""


def forged_report_log(node_ids: list[str], exit_status: int = 0) -> str:
    """A pytest-reportlog file claiming every test passed, as code in the test process could write it."""
    records: list[dict[str, object]] = [{"pytest_version": "8.3.4", "$report_type": "SessionStart"}]
    for nodeid in node_ids:
        for when in ("setup", "call", "teardown"):
            records.append(
                {
                    "$report_type": "TestReport",
                    "nodeid": nodeid,
                    "when": when,
                    "outcome": "passed",
                    "location": [nodeid.split("::")[0], 1, nodeid],
                    "keywords": {},
                    "longrepr": None,
                    "sections": [],
                    "duration": 0.0,
                    "user_properties": [],
                }
            )
    records.append({"exitstatus": exit_status, "$report_type": "SessionFinish"})
    return "".join(json.dumps(record) + "\n" for record in records)


def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ORCHARD cache for every xdist worker of this run (venv and tree builds are locked), none in ~."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = root / "orchard-cache"
    path.mkdir(exist_ok=True)
    return path
