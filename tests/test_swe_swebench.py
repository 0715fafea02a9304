"""SWE-bench interoperability: official instance rows load and round-trip, local clones attach, our
predictions files read back through `swebench` itself, and our verdict agrees with SWE-bench's grading.

Tests that need the `swebench` package skip without it on a developer machine; CI installs the `swe`
extra (scripts/setup.sh), so there they must run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.swe.instance import GitSource, SWEInstance, load_suite
from orchard_envs.tasks.swe.report import TestStatus, verdict
from orchard_envs.tasks.swe.source import materialize
from orchard_envs.tasks.swe.swebench_io import (
    attach_local_repos,
    clone_dir,
    describe_missing,
    prediction_row,
    write_predictions,
)


def need(module: str) -> ModuleType:
    """Import an optional module: skip without it, except in CI, which installs the `swe` extra."""
    if os.environ.get("CI"):
        return __import__(module, fromlist=["_"])
    return pytest.importorskip(module)


# Shaped like rows of princeton-nlp/SWE-bench: the test lists are JSON strings, and the rows carry fields
# SWEInstance does not declare (hints_text, created_at, environment_setup_commit).
ASTROPY_F2P = [
    "astropy/modeling/tests/test_separable.py::test_separable[compound_model6-result6]",
    "astropy/modeling/tests/test_separable.py::test_separable[compound_model9-result9]",
]
ASTROPY_P2P = [
    "astropy/modeling/tests/test_separable.py::test_coord_matrix",
    "astropy/modeling/tests/test_separable.py::test_cdot",
]
DJANGO_F2P = ["test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)"]
OFFICIAL_ROWS = [
    {
        "repo": "astropy/astropy",
        "instance_id": "astropy__astropy-12907",
        "base_commit": "d16bfe05a744909de4b27f5875fe0d4ed41ce607",
        "patch": "diff --git a/astropy/modeling/separable.py b/astropy/modeling/separable.py\n"
        "--- a/astropy/modeling/separable.py\n+++ b/astropy/modeling/separable.py\n"
        "@@ -242,7 +242,7 @@ def _cstack(left, right):\n"
        "-        cright[-right.shape[0]:, -right.shape[1]:] = 1\n"
        "+        cright[-right.shape[0]:, -right.shape[1]:] = right\n",
        "test_patch": "diff --git a/astropy/modeling/tests/test_separable.py "
        "b/astropy/modeling/tests/test_separable.py\n",
        "problem_statement": "Modeling's `separability_matrix` does not compute separability correctly "
        "for nested CompoundModels\n",
        "hints_text": "",
        "created_at": "2022-03-03T15:14:54Z",
        "version": "4.3",
        "FAIL_TO_PASS": json.dumps(ASTROPY_F2P),
        "PASS_TO_PASS": json.dumps(ASTROPY_P2P),
        "environment_setup_commit": "298ccb478e6bf092953bca67a3d29dc6c35f6752",
    },
    {
        "repo": "astropy/astropy",
        "instance_id": "astropy__astropy-14182",
        "base_commit": "a5917978be39d13cd90b517e1de4e7a539ffaa48",
        "patch": "diff --git a/astropy/io/ascii/rst.py b/astropy/io/ascii/rst.py\n",
        "test_patch": "diff --git a/astropy/io/ascii/tests/test_rst.py "
        "b/astropy/io/ascii/tests/test_rst.py\n",
        "problem_statement": "Please support header rows in RestructuredText output\n",
        "hints_text": "Thanks for the suggestion — a PR would be welcome.",
        "created_at": "2023-02-03T20:26:33Z",
        "version": "5.1",
        "FAIL_TO_PASS": json.dumps(["astropy/io/ascii/tests/test_rst.py::test_rst_with_header_rows"]),
        "PASS_TO_PASS": json.dumps([]),
        "environment_setup_commit": "5f74eacbcc7fff707a44d8eb58adaa514cb7dcb5",
    },
    {
        "repo": "django/django",
        "instance_id": "django__django-11099",
        "base_commit": "d26b2424437dabeeca94d7900b37d2df4410da0c",
        "patch": "diff --git a/django/contrib/auth/validators.py b/django/contrib/auth/validators.py\n",
        "test_patch": "diff --git a/tests/auth_tests/test_validators.py "
        "b/tests/auth_tests/test_validators.py\n",
        "problem_statement": "UsernameValidator allows trailing newline in usernames\n",
        "hints_text": "",
        "created_at": "2019-03-20T03:46:18Z",
        "version": "3.0",
        "FAIL_TO_PASS": json.dumps(DJANGO_F2P),
        "PASS_TO_PASS": json.dumps(
            ["test_help_text (auth_tests.test_validators.UserAttributeSimilarityTest)"]
        ),
        "environment_setup_commit": "419a78300f7cd27611196e1e464d50fd0385ff27",
    },
]
EXTRA_FIELDS = ("hints_text", "created_at", "environment_setup_commit")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def dumped(instances: list[SWEInstance]) -> list[dict]:
    return [instance.model_dump(mode="json") for instance in instances]


# --- loading official instance files -------------------------------------------------------------


def test_official_jsonl_loads_with_its_extra_fields_and_round_trips(tmp_path):
    instances = load_suite(write_jsonl(tmp_path / "swe-bench.jsonl", OFFICIAL_ROWS))
    assert [i.instance_id for i in instances] == [row["instance_id"] for row in OFFICIAL_ROWS]
    first = instances[0]
    assert first.FAIL_TO_PASS == ASTROPY_F2P and first.PASS_TO_PASS == ASTROPY_P2P
    assert instances[2].FAIL_TO_PASS == DJANGO_F2P
    assert first.version == "4.3" and first.source is None and not first.runnable
    for instance, row in zip(instances, OFFICIAL_ROWS, strict=True):
        assert {k: instance.model_extra[k] for k in EXTRA_FIELDS} == {k: row[k] for k in EXTRA_FIELDS}
    assert "patch" not in first.public_metadata() and "hints_text" not in first.public_metadata()

    again = load_suite(write_jsonl(tmp_path / "again.jsonl", dumped(instances)))
    assert dumped(again) == dumped(instances)
    for row, orig in zip(dumped(again), OFFICIAL_ROWS, strict=True):
        assert {k: row[k] for k in EXTRA_FIELDS} == {k: orig[k] for k in EXTRA_FIELDS}


def test_official_json_list_and_parquet_load_the_same_instances(tmp_path):
    pq = need("pyarrow.parquet")
    import pyarrow as pa

    expected = dumped(load_suite(write_jsonl(tmp_path / "rows.jsonl", OFFICIAL_ROWS)))
    (tmp_path / "rows.json").write_text(json.dumps(OFFICIAL_ROWS), encoding="utf-8")
    assert dumped(load_suite(tmp_path / "rows.json")) == expected

    pq.write_table(pa.Table.from_pylist(OFFICIAL_ROWS), tmp_path / "test-00000-of-00001.parquet")
    from_parquet = load_suite(tmp_path / "test-00000-of-00001.parquet")
    assert dumped(from_parquet) == expected
    assert (
        from_parquet[0].model_extra["environment_setup_commit"]
        == OFFICIAL_ROWS[0]["environment_setup_commit"]
    )


def test_parquet_without_pyarrow_is_a_config_error_saying_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "test.parquet"
    path.write_bytes(b"PAR1 not really parquet PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow...` raise ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"test\.parquet is Parquet: install pyarrow"):
        load_suite(path)


# --- local clones ----------------------------------------------------------------------------------


def make_clone(path: Path) -> str:
    """A git repository with one commit; return its id."""
    path.mkdir(parents=True)
    (path / "setup.py").write_text("print('hello')\n")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "base"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=env, capture_output=True)
    return subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_attach_local_repos_uses_owner__name_clones_and_leaves_the_rest(tmp_path, monkeypatch):
    commit = make_clone(tmp_path / "repos" / "astropy__astropy")
    (tmp_path / "repos" / "django__django").mkdir()  # a folder that is not a clone does not count
    rows = [dict(OFFICIAL_ROWS[0], base_commit=commit), *OFFICIAL_ROWS[1:]]
    pinned = GitSource(path="/somewhere/else")
    instances = load_suite(write_jsonl(tmp_path / "suite.jsonl", rows))
    instances[1] = instances[1].model_copy(update={"source": pinned})

    monkeypatch.chdir(tmp_path)
    attached = attach_local_repos(instances, Path("repos"))  # relative to the cwd, stored absolute
    clone = (tmp_path / "repos" / "astropy__astropy").resolve()
    assert attached[0].source == GitSource(path=str(clone)) and attached[0].runnable
    assert attached[1].source == pinned  # an instance's own source wins
    assert attached[2].source is None  # django__django is not a git repository
    assert instances[0].source is None  # the input is not modified
    assert clone_dir(tmp_path / "repos", "django/django") == tmp_path / "repos" / "django__django"

    head = materialize(attached[0], tmp_path / "work", tmp_path / "cache")
    assert (tmp_path / "work" / "setup.py").read_text() == "print('hello')\n" and len(head) == 40


def test_attach_local_repos_needs_an_existing_folder(tmp_path):
    instances = load_suite(write_jsonl(tmp_path / "suite.jsonl", OFFICIAL_ROWS))
    with pytest.raises(ConfigError, match="not a folder of clones named <owner>__<name>"):
        attach_local_repos(instances, tmp_path / "no-such-folder")


def test_describe_missing_names_the_repositories_and_the_ways_out(tmp_path):
    instances = load_suite(write_jsonl(tmp_path / "suite.jsonl", OFFICIAL_ROWS))
    message = describe_missing(instances)
    assert message is not None
    assert message.startswith("3 of 3 SWE instances need their GitHub repository")
    assert "astropy/astropy (2), django/django (1)" in message
    assert "<folder>/astropy__astropy" in message and "'swe-mini'" in message and "Docker" in message

    one_left = [i.model_copy(update={"source": GitSource(path="/x")}) for i in instances[:2]] + instances[2:]
    assert describe_missing(one_left).startswith("1 of 3 SWE instance needs its GitHub repository")
    assert describe_missing(one_left[:2]) is None


# --- predictions -----------------------------------------------------------------------------------

PATCH = "diff --git a/a.py b/a.py\n--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-x = 'é'\n+x = \"naïve\\n\"\n"
ROWS = [
    prediction_row("astropy__astropy-12907", "orchard/agent-7b", PATCH),
    prediction_row("astropy__astropy-14182", "orchard/agent-7b", ""),
    prediction_row("django__django-11099", "orchard/agent-7b", None),
]


@pytest.mark.parametrize("name", ["preds.json", "preds.jsonl"])
def test_write_predictions_reads_back_and_leaves_no_temp_file(tmp_path, name):
    path = write_predictions(tmp_path / "out" / name, ROWS)
    assert path == tmp_path / "out" / name
    text = path.read_text(encoding="ascii")  # non-ASCII is escaped: any locale's open() reads it
    rows = json.loads(text) if name.endswith(".json") else [json.loads(line) for line in text.splitlines()]
    assert rows == ROWS
    assert ROWS[0] == {
        "instance_id": "astropy__astropy-12907",
        "model_name_or_path": "orchard/agent-7b",
        "model_patch": PATCH,
    }
    assert os.listdir(path.parent) == [name]
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_predictions_rejects_duplicates_bad_rows_and_suffixes_without_touching_the_file(tmp_path):
    path = write_predictions(tmp_path / "preds.json", ROWS[:1])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="duplicate predictions for instance_id astropy__astropy-12907"):
        write_predictions(path, [*ROWS, prediction_row("astropy__astropy-12907", "other", "")])
    with pytest.raises(ConfigError, match="prediction django__django-11099 lacks model_patch"):
        write_predictions(path, [{"instance_id": "django__django-11099", "model_name_or_path": "m"}])
    with pytest.raises(ConfigError, match=r"must end in \.json"):
        write_predictions(tmp_path / "preds.txt", ROWS)
    with pytest.raises(ConfigError, match="non-empty instance_id"):
        prediction_row("", "m", "")
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["preds.json"]


def test_write_predictions_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    path = write_predictions(tmp_path / "preds.jsonl", ROWS[:1])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_predictions(path, ROWS)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["preds.jsonl"]


@pytest.mark.parametrize("name", ["preds.json", "preds.jsonl"])
def test_swebench_reads_our_predictions_file(tmp_path, name):
    utils = need("swebench.harness.utils")
    path = write_predictions(tmp_path / name, ROWS)
    # dataset_name and split are only read for the "gold" pseudo-path
    assert utils.get_predictions_from_file(str(path), dataset_name="unused", split="test") == ROWS


# --- grading semantics against swebench.harness.grading ------------------------------------------

# Node ids with balanced brackets: a '[' without its ']' is a truncated id, which SWE-bench >= 5
# prefix-matches (see test_known_difference_truncated_parametrized_id).
NODE_IDS = [
    "tests/test_a.py::test_one",
    "tests/test_a.py::test_two[1-2]",
    "tests/test_a.py::TestK::test_three",
    "tests/test_b.py::test_four[x]",
    "tests/test_b.py::test_four[y]",
    "test_five (app.tests.Case)",
]
STATUS = st.sampled_from(list(TestStatus))
STATUS_MAPS = st.dictionaries(st.sampled_from(NODE_IDS), STATUS, max_size=len(NODE_IDS))
TEST_LISTS = st.lists(st.sampled_from(NODE_IDS), max_size=5)


def swebench_verdict(statuses: dict[str, TestStatus], f2p: list[str], p2p: list[str]):
    """SWE-bench's report and resolution for a status map, as `get_eval_report` computes them."""
    grading = need("swebench.harness.grading")
    from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS, EvalType, ResolvedStatus

    status_map = {test: status.value for test, status in statuses.items()}
    report = grading.get_eval_tests_report(
        status_map, {FAIL_TO_PASS: f2p, PASS_TO_PASS: p2p}, eval_type=EvalType.PASS_AND_FAIL
    )
    resolved = grading.get_resolution_status(report) == ResolvedStatus.FULL.value
    return report[FAIL_TO_PASS], report[PASS_TO_PASS], resolved


@settings(max_examples=400, deadline=None)
@given(statuses=STATUS_MAPS, f2p=TEST_LISTS, p2p=TEST_LISTS)
def test_verdict_agrees_with_swebench_grading(statuses, f2p, p2p):
    """Identical except for SKIPPED, where ours is stricter: a skipped listed test is always a failure.

    swebench 4.x puts a skipped test in neither list (so it drops out of the ratio); 5.x counts a
    skipped FAIL_TO_PASS test as a failure and a skipped PASS_TO_PASS test as a success.
    """
    ours = verdict(statuses, f2p, p2p)
    sw_f2p, sw_p2p, sw_resolved = swebench_verdict(statuses, f2p, p2p)
    skipped = {test for test, status in statuses.items() if status == TestStatus.SKIPPED}
    for tests, sw, success, failure in (
        (f2p, sw_f2p, ours.fail_to_pass_success, ours.fail_to_pass_failure),
        (p2p, sw_p2p, ours.pass_to_pass_success, ours.pass_to_pass_failure),
    ):
        assert success == [t for t in sw["success"] if t not in skipped]
        assert failure == [t for t in tests if t not in success]
        assert [t for t in failure if t in set(sw["failure"])] == sw["failure"]  # theirs are ours too
        assert [t for t in failure if t not in skipped] == [t for t in sw["failure"] if t not in skipped]
    assert ours.resolved == (sw_resolved and not skipped & {*f2p, *p2p})


def test_known_difference_skipped_pass_to_pass_test():
    """A PASS_TO_PASS test the patch makes skip: SWE-bench resolves, we do not."""
    statuses = {"t.py::test_fixed": TestStatus.PASSED, "t.py::test_kept": TestStatus.SKIPPED}
    ours = verdict(statuses, ["t.py::test_fixed"], ["t.py::test_kept"])
    _, sw_p2p, sw_resolved = swebench_verdict(statuses, ["t.py::test_fixed"], ["t.py::test_kept"])
    assert ours.pass_to_pass_failure == ["t.py::test_kept"] and not ours.resolved
    assert sw_p2p["failure"] == [] and sw_resolved


def test_known_difference_truncated_parametrized_id():
    """SWE-bench >= 5 prefix-matches ids cut off inside '[...]' (676 of them in SWE-bench Verified);
    we match node ids exactly, so such a test counts as missing."""
    truncated = "astropy/io/ascii/tests/test_cds.py::test_ogip_grammar_fail[log(photon"
    statuses = {truncated + "/cm**2/s/Hz/arcsec**2/nm)]": TestStatus.PASSED}
    ours = verdict(statuses, [truncated], [])
    sw_f2p, _, sw_resolved = swebench_verdict(statuses, [truncated], [])
    assert ours.fail_to_pass_failure == [truncated] and not ours.resolved
    # 4.x matches exactly, as we do; 5.x finds the full id
    assert (sw_f2p["success"], sw_resolved) in [([], False), ([truncated], True)]
