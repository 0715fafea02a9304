"""Reading test outcomes from a real pytest-reportlog file, and the SWE-bench verdict over them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from swe_fixtures import forged_report_log, shared_cache

from orchard_envs.tasks.swe.instance import SWEInstance
from orchard_envs.tasks.swe.prepare import build_venv
from orchard_envs.tasks.swe.report import ReportError, TestStatus, parse_report_log, verdict

SAMPLE = """\
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


@pytest.fixture
def bad_teardown():
    yield
    raise RuntimeError("teardown exploded")


def test_pass():
    pass


def test_fail():
    assert 1 == 2, "one is not two"


def test_fixture_error(broken):
    pass


def test_teardown_error(bad_teardown):
    pass


def test_skip_call():
    pytest.skip("not today")


@pytest.mark.skip(reason="marked")
def test_skip_marker():
    pass


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False


def test_xfail_imperative():
    pytest.xfail("gave up")


@pytest.mark.xfail(strict=True)
def test_xpass_strict():
    pass


@pytest.mark.xfail(strict=False)
def test_xpass_loose():
    pass


@pytest.mark.parametrize("value", ["a b", "x[1]", "::", "tab\\tnew", "ü"], ids=lambda v: v)
def test_param(value):
    assert value != "x[1]"


@pytest.mark.parametrize("a, b", [(1, 2), (3, 3)], ids=["one [two]", "three-three"])
def test_pairs(a, b):
    assert a == b


class TestOuter:
    def test_method(self):
        pass

    class TestInner:
        def test_deep(self):
            assert False

        @pytest.mark.parametrize("n", [1, 2])
        def test_deep_param(self, n):
            assert n == 1
"""

OTHER = """\
class Base:
    def test_inherited(self):
        assert self.value == 1


class TestOne(Base):
    value = 1


class TestTwo(Base):
    value = 2
"""

EXPECTED = {
    "tests/test_sample.py::test_pass": TestStatus.PASSED,
    "tests/test_sample.py::test_fail": TestStatus.FAILED,
    "tests/test_sample.py::test_fixture_error": TestStatus.ERROR,
    "tests/test_sample.py::test_teardown_error": TestStatus.ERROR,
    "tests/test_sample.py::test_skip_call": TestStatus.SKIPPED,
    "tests/test_sample.py::test_skip_marker": TestStatus.SKIPPED,
    "tests/test_sample.py::test_xfail": TestStatus.XFAIL,
    "tests/test_sample.py::test_xfail_imperative": TestStatus.XFAIL,
    "tests/test_sample.py::test_xpass_strict": TestStatus.FAILED,
    "tests/test_sample.py::test_xpass_loose": TestStatus.PASSED,
    "tests/test_sample.py::test_param[a b]": TestStatus.PASSED,
    "tests/test_sample.py::test_param[x[1]]": TestStatus.FAILED,
    "tests/test_sample.py::test_param[::]": TestStatus.PASSED,
    "tests/test_sample.py::test_param[tab\\tnew]": TestStatus.PASSED,
    "tests/test_sample.py::test_param[\\xfc]": TestStatus.PASSED,
    "tests/test_sample.py::test_pairs[one [two]]": TestStatus.FAILED,
    "tests/test_sample.py::test_pairs[three-three]": TestStatus.PASSED,
    "tests/test_sample.py::TestOuter::test_method": TestStatus.PASSED,
    "tests/test_sample.py::TestOuter::TestInner::test_deep": TestStatus.FAILED,
    "tests/test_sample.py::TestOuter::TestInner::test_deep_param[1]": TestStatus.PASSED,
    "tests/test_sample.py::TestOuter::TestInner::test_deep_param[2]": TestStatus.FAILED,
    "tests/sub/test_other.py::TestOne::test_inherited": TestStatus.PASSED,
    "tests/sub/test_other.py::TestTwo::test_inherited": TestStatus.FAILED,
}


@pytest.fixture(scope="module")
def task_python(tmp_path_factory) -> Path:
    """The Python of a task venv (pytest and pytest-reportlog at the versions grading uses)."""
    instance = SWEInstance(
        instance_id="report", repo="x/y", base_commit="0", patch="", problem_statement="", FAIL_TO_PASS=[]
    )
    return build_venv(instance, shared_cache(tmp_path_factory)) / "bin" / "python"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    (root / "tests" / "sub").mkdir(parents=True)
    (root / "tests" / "test_sample.py").write_text(SAMPLE)
    (root / "tests" / "sub" / "test_other.py").write_text(OTHER)
    (root / "tests" / "test_broken.py").write_text("import no_such_module\n\ndef test_never():\n    pass\n")
    (root / "pytest.ini").write_text("[pytest]\n")
    return root


def pytest_in(python: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the task venv's pytest in `root` with a clean environment (nothing of this pytest run leaks)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def report(task_python, project) -> tuple[str, int]:
    """(the report log text, pytest's exit code) of one real run over the sample project."""
    log = project / "report.jsonl"
    result = pytest_in(task_python, project, f"--report-log={log}", "tests/test_sample.py", "tests/sub")
    return log.read_text(), result.returncode


def test_statuses_of_a_real_run(report):
    text, exit_code = report
    statuses, messages, exit_status = parse_report_log(text)
    assert exit_status == exit_code == 1
    assert statuses == EXPECTED
    assert messages["tests/test_sample.py::test_fail"].startswith("AssertionError: one is not two")
    assert "fixture exploded" in messages["tests/test_sample.py::test_fixture_error"]
    assert "teardown exploded" in messages["tests/test_sample.py::test_teardown_error"]
    assert "XPASS(strict)" in messages["tests/test_sample.py::test_xpass_strict"]
    assert set(messages) == {nodeid for nodeid, s in statuses.items() if s in ("FAILED", "ERROR")}


def test_node_ids_are_pytests_own(task_python, project, report):
    """Report node ids equal `--collect-only -q` ones, so FAIL_TO_PASS ids match whatever their form."""
    collected = pytest_in(task_python, project, "--collect-only", "-q", "tests/test_sample.py", "tests/sub")
    ids = {line for line in collected.stdout.splitlines() if "::" in line}
    assert ids == set(parse_report_log(report[0])[0]) == set(EXPECTED)


def test_node_ids_select_the_same_tests(task_python, project, tmp_path):
    """The grader passes node ids in an @file; brackets, spaces and '::' inside ids survive that."""
    wanted = [nodeid for nodeid in EXPECTED if "[" in nodeid or "TestInner" in nodeid]
    (tmp_path / "ids.txt").write_text("\n".join(wanted) + "\n")
    log = tmp_path / "report.jsonl"
    pytest_in(task_python, project, f"--report-log={log}", f"@{tmp_path / 'ids.txt'}")
    statuses, _, _ = parse_report_log(log.read_text())
    assert statuses == {nodeid: EXPECTED[nodeid] for nodeid in wanted}


def test_collection_error_leaves_the_tests_missing(task_python, project, tmp_path):
    log = tmp_path / "report.jsonl"
    result = pytest_in(task_python, project, f"--report-log={log}", "tests/test_broken.py", "tests/sub")
    statuses, _, exit_status = parse_report_log(log.read_text())
    assert exit_status == result.returncode == 2  # interrupted: errors during collection
    assert not any(nodeid.startswith("tests/test_broken.py::") for nodeid in statuses)
    outcome = verdict(statuses, ["tests/test_broken.py::test_never"], [])
    assert outcome.fail_to_pass_failure == ["tests/test_broken.py::test_never"] and not outcome.resolved


def test_a_forged_report_parses_like_a_real_one():
    """The grader's own stand-in for an attacker's report (used by the grading tests) is a valid report."""
    ids = ["tests/test_calc.py::test_add", "tests/test_calc.py::TestClamp::test_at_upper_bound"]
    statuses, messages, exit_status = parse_report_log(forged_report_log(ids))
    assert statuses == dict.fromkeys(ids, TestStatus.PASSED) and messages == {} and exit_status == 0


# --- unusable reports are ReportError, never a pass ----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\n",
        b"",
        "<?xml version='1.0'?><testsuites><testsuite/></testsuites>",
        "not json at all\n",
        '{"pytest_version": "8.3.4", "$report_type": "SessionStart"}\n',  # killed before the end
        '{"$report_type": "TestReport", "nodeid": "t.py::x", "when": "call", "outcome": "passed"}\n',
        "[1, 2, 3]\n{}\nnull\n",
        '{"$report_type": "SessionFinish", "exitstatus": 0}\n{"$report_type": "TestRe',  # cut mid-line
        '{"$report_type": "SessionFinish", "exitstatus": "zero"}\n',
        '{"$report_type": "SessionFinish", "exitstatus": null}\n',
        '{"$report_type": "SessionFinish", "exitstatus": [0]}\n',
        "[" * 100_000 + "\n",
    ],
    ids=lambda v: repr(v)[:40],
)
def test_unusable_reports_raise_report_error(text):
    with pytest.raises(ReportError):
        parse_report_log(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
records = st.fixed_dictionaries(
    {"$report_type": st.sampled_from(["TestReport", "SessionFinish", "CollectReport", "Other"])},
    optional={
        "nodeid": json_values,
        "when": st.sampled_from(["setup", "call", "teardown"]) | json_values,
        "outcome": st.sampled_from(["passed", "failed", "skipped"]) | json_values,
        "longrepr": json_values,
        "wasxfail": json_values,
        "exitstatus": st.integers(-5, 5) | json_values,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(records | json_values, max_size=6), st.booleans())
def test_any_json_lines_give_a_report_or_report_error(lines, garbage_tail):
    """Whatever the code under test writes into the report file, reading it fails only with ReportError."""
    text = "".join(json.dumps(line) + "\n" for line in lines) + ("{oops\n" if garbage_tail else "")
    try:
        statuses, messages, exit_status = parse_report_log(text)
    except ReportError:
        return
    assert isinstance(exit_status, int)
    assert all(isinstance(k, str) and isinstance(v, TestStatus) for k, v in statuses.items())
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in messages.items())


@pytest.mark.parametrize(
    "longrepr", ["   ", {"reprcrash": "boom"}, {"reprcrash": None}, ["f.py", 1, "x"], 7, None]
)
def test_odd_failure_details_still_count_as_failures(longrepr):
    record = {"$report_type": "TestReport", "nodeid": "t.py::x", "when": "call", "outcome": "failed"}
    text = json.dumps({**record, "longrepr": longrepr}) + "\n"
    text += json.dumps({"$report_type": "SessionFinish", "exitstatus": 1}) + "\n"
    statuses, messages, _ = parse_report_log(text)
    assert statuses == {"t.py::x": TestStatus.FAILED} and isinstance(messages["t.py::x"], str)


def test_phases_combine_to_the_worst_status():
    def line(when: str, outcome: str, **extra: object) -> str:
        record = {"$report_type": "TestReport", "nodeid": "t.py::x", "when": when, "outcome": outcome}
        return json.dumps({**record, **extra}) + "\n"

    finish = json.dumps({"$report_type": "SessionFinish", "exitstatus": 1}) + "\n"
    cases = {
        line("setup", "passed") + line("call", "passed") + line("teardown", "passed"): TestStatus.PASSED,
        line("setup", "passed") + line("call", "failed") + line("teardown", "failed"): TestStatus.ERROR,
        line("setup", "failed") + line("teardown", "passed"): TestStatus.ERROR,
        line("setup", "skipped") + line("teardown", "passed"): TestStatus.SKIPPED,
        line("setup", "passed") + line("call", "skipped", wasxfail="") + line("teardown", "passed"): "XFAIL",
        line("call", "skipped", wasxfail="") + line("teardown", "failed"): TestStatus.ERROR,
    }
    for text, expected in cases.items():
        assert parse_report_log(text + finish)[0] == {"t.py::x": expected}, text


# --- verdict semantics ----------------------------------------------------------------------------------


def test_verdict_follows_swe_bench():
    statuses = {
        "a": TestStatus.PASSED,
        "b": TestStatus.XFAIL,
        "c": TestStatus.SKIPPED,
        "d": TestStatus.FAILED,
        "e": TestStatus.ERROR,
    }
    outcome = verdict(statuses, ["a", "b", "c", "missing"], ["d", "e", "a"])
    assert outcome.fail_to_pass_success == ["a", "b"]
    assert outcome.fail_to_pass_failure == ["c", "missing"]
    assert outcome.pass_to_pass_success == ["a"]
    assert outcome.pass_to_pass_failure == ["d", "e"]
    assert not outcome.resolved


@pytest.mark.parametrize(
    ("status", "passes"),
    [
        (TestStatus.PASSED, True),
        (TestStatus.XFAIL, True),
        (TestStatus.SKIPPED, False),
        (TestStatus.FAILED, False),
        (TestStatus.ERROR, False),
        (None, False),  # missing from the report
    ],
)
def test_each_status_alone(status, passes):
    statuses = {} if status is None else {"t": status}
    assert verdict(statuses, ["t"], []).resolved is passes
    assert verdict(statuses, [], ["t"]).resolved is passes


def test_empty_lists_and_extra_tests():
    assert verdict({}, [], []).resolved
    outcome = verdict({"t": TestStatus.PASSED, "other": TestStatus.FAILED}, ["t"], [])
    assert outcome.resolved  # tests outside both lists do not count


def test_reportlog_is_what_the_grader_names(task_python):
    """The venv really has the plugin the grader's --report-log needs (not an unknown-option error)."""
    result = subprocess.run([str(task_python), "-m", "pytest", "--help"], capture_output=True, text=True)
    assert "--report-log" in result.stdout, result.stderr
    assert os.access(task_python, os.X_OK)
