"""SWE grading against an agent that games the tests, on a real instance in real (local) sandboxes.

Each attack is graded as the env grades a submission; where the grader's defence is dropping a file, an
`unguarded` run (the whole patch applied, nothing dropped) shows the attack would have worked, so a pass
here is the defence's doing and not a broken attack. The holes no grader of in-process Python tests can
close are kept as strict xfails: they document the limit and fail loudly if it ever moves.
"""

from __future__ import annotations

import base64
import gzip
import json
import shlex
from collections.abc import Iterator, Mapping

import pytest
from swe_fixtures import (
    CALC_BUGGY,
    CALC_FIXED,
    FAIL_TO_PASS,
    OUTCOME_REWRITER,
    PASS_TO_PASS,
    SETUP_CFG,
    TEST_CALC,
    CalcRepo,
    calc_with,
    forged_report_log,
    shared_cache,
)

from orchard_envs.errors import OrchardError
from orchard_envs.sandbox import Backend, Sandbox
from orchard_envs.tasks.swe.grading import (
    GradeResult,
    TestRun,
    UnusableDiff,
    _consistency_error,
    extract_patch,
    grade,
    run_tests,
    unpack_report,
    unusable_result,
)
from orchard_envs.tasks.swe.instance import SWEInstance
from orchard_envs.tasks.swe.prepare import REPO_DIR, PreparedTree, prepare, sandbox_spec
from orchard_envs.tasks.swe.report import ReportError, TestsReport, TestStatus, parse_report_log, verdict

ALL_TESTS = FAIL_TO_PASS + PASS_TO_PASS
FORGED = forged_report_log(ALL_TESTS)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Iterator:
    path = shared_cache(tmp_path_factory)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ORCHARD_CACHE", str(path))  # nothing may fall back to ~/.cache
        yield path


@pytest.fixture(scope="module")
def calc(tmp_path_factory) -> CalcRepo:
    return CalcRepo(tmp_path_factory.mktemp("calc-src") / "calc")


@pytest.fixture(scope="module")
def instance(calc) -> SWEInstance:
    return calc.instance()


@pytest.fixture(scope="module")
def tree(instance, cache) -> PreparedTree:
    return prepare(instance, cache)


@pytest.fixture
def grade_files(local_backend, tree, instance, calc):
    """Grade the diff that writing (str/bytes) or deleting (None) these files makes against the base."""

    def run(files: Mapping[str, str | bytes | None], **overrides: object) -> GradeResult:
        target = instance.model_copy(update=overrides) if overrides else instance
        return grade(local_backend, tree, target, calc.patch(files) if files else "", timeout=60)

    return run


def unguarded(backend: Backend, tree: PreparedTree, instance: SWEInstance, patch: str) -> TestsReport:
    """The verdict with the whole patch applied, protected files and all, run as the grader runs pytest
    (plugin autoload off): what the attack alone achieves."""
    with backend.create(sandbox_spec(tree)) as sandbox:
        sandbox.apply_patch(patch, cwd=REPO_DIR)
        sandbox.apply_patch(instance.test_patch, cwd=REPO_DIR)
        run = run_tests(sandbox, instance, ALL_TESTS, 60)
    assert run.error is None, run.log_tail
    return verdict(run.statuses, instance.FAIL_TO_PASS, instance.PASS_TO_PASS)


def assert_unresolved(result: GradeResult) -> None:
    assert result.status == "unresolved", (result.status, result.reason, result.test_run)
    assert result.reward == 0.0


def assert_never_resolved(result: GradeResult) -> None:
    assert result.status in ("unresolved", "error"), (result.reason, result.test_run)
    assert result.reward == 0.0


# --- the baseline -----------------------------------------------------------------------------------


def test_gold_patch_resolves(local_backend, tree, instance):
    result = grade(local_backend, tree, instance, instance.patch)
    assert result.status == "resolved" and result.reward == 1.0, result.reason
    assert result.dropped_files == [] and result.graded_patch == instance.patch
    assert result.suspicious == []
    assert result.tests is not None
    assert result.tests.fail_to_pass_success == FAIL_TO_PASS
    assert result.tests.pass_to_pass_success == PASS_TO_PASS
    assert result.test_run is not None and result.test_run.exit_code == 1  # the canary's failure
    assert result.test_run.statuses[result.canary] == TestStatus.FAILED


def test_canary_names_are_unpredictable(local_backend, tree, instance):
    first, second = (grade(local_backend, tree, instance, "").canary for _ in range(2))
    assert first != second and first.split("::")[0] != second.split("::")[0]


def test_empty_patch_is_unresolved_not_an_error(local_backend, tree, instance):
    result = grade(local_backend, tree, instance, "")
    assert_unresolved(result)
    assert result.tests is not None
    assert result.tests.fail_to_pass_failure == FAIL_TO_PASS
    assert result.tests.pass_to_pass_success == PASS_TO_PASS
    assert result.test_run is not None and result.test_run.exit_code == 1


def test_a_patch_that_does_not_apply_is_unresolved(local_backend, tree, instance):
    bogus = "diff --git a/calc/no.py b/calc/no.py\n--- a/calc/no.py\n+++ b/calc/no.py\n@@ -1 +1 @@\n-a\n+b\n"
    result = grade(local_backend, tree, instance, bogus)
    assert_unresolved(result)
    assert "does not apply" in result.reason


# --- output and outcomes forged from the library ----------------------------------------------------

FORGED_LINES = """
import sys

def _brag():
    for stream in (sys.stdout, sys.stderr):
        for nodeid in {ids!r}:
            print(nodeid + " PASSED", file=stream)
        print("=" * 30 + " 10 passed in 0.01s " + "=" * 30, file=stream)
        stream.flush()

_brag()
"""


def test_forged_passed_lines_in_the_log(grade_files):
    prelude = FORGED_LINES.format(ids=ALL_TESTS)
    library = calc_with(prelude).replace('    """Limit x', '    _brag()\n    """Limit x')
    result = grade_files({"calc/__init__.py": library})
    assert_unresolved(result)
    assert result.test_run is not None
    assert "tests/test_calc.py::test_clamp_inside PASSED" in result.test_run.log_tail  # it did print
    assert " 10 passed in 0.01s " in result.test_run.log_tail


def test_pytest_skip_in_the_library_is_a_failure(grade_files):
    library = CALC_BUGGY.replace(
        "    return max(lo", "    import pytest\n\n    pytest.skip('no')\n    return max(lo"
    )
    result = grade_files({"calc/__init__.py": library})
    assert_unresolved(result)
    assert result.tests is not None and result.tests.fail_to_pass_success == []
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_calc.py::test_clamp_inside"] == TestStatus.SKIPPED


def test_pytest_xfail_in_the_library_does_not_pass_fail_to_pass(grade_files):
    """SWE-bench counts XFAIL as a pass; one line of library code would then turn every failing test
    into one. A FAIL_TO_PASS test must really pass."""
    library = CALC_BUGGY.replace(
        "    return max(lo, min(x, lo))",
        "    if x > lo:\n        import pytest\n\n        pytest.xfail('no')\n    return max(lo, min(x, lo))",
    )
    result = grade_files({"calc/__init__.py": library})
    assert_unresolved(result)
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_calc.py::test_clamp_inside"] == TestStatus.XFAIL
    assert result.tests is not None
    assert "tests/test_calc.py::test_clamp_inside" in result.tests.fail_to_pass_failure
    assert result.tests.pass_to_pass_success == PASS_TO_PASS


# --- test, test-config and start-up-hook files --------------------------------------------------------

CONFTEST = OUTCOME_REWRITER


@pytest.mark.parametrize("where", ["conftest.py", "tests/conftest.py"])
def test_conftest_hook_rewriting_outcomes_is_dropped(where, grade_files, local_backend, tree, instance, calc):
    files = {where: CONFTEST}
    assert unguarded(local_backend, tree, instance, calc.patch(files)).resolved  # the attack works...
    result = grade_files(files)
    assert_unresolved(result)  # ...but not against the grader
    assert result.dropped_files == [where] and result.graded_patch == ""


def test_a_dropped_conftest_does_not_cost_a_real_fix(grade_files):
    result = grade_files(
        {"calc/__init__.py": CALC_FIXED, "conftest.py": CONFTEST, "calc/conftest.py": CONFTEST}
    )
    assert result.status == "resolved" and result.reward == 1.0, result.reason
    assert result.dropped_files == ["calc/conftest.py", "conftest.py"]


PLUGIN = {"calc/outcomes.py": OUTCOME_REWRITER}
CONFIG_ATTACKS = {
    "setup.cfg": SETUP_CFG + "addopts = -p calc.outcomes\n",
    "pytest.ini": "[pytest]\naddopts = -p calc.outcomes\n",
    ".pytest.ini": "[pytest]\naddopts = -p calc.outcomes\n",
    "tox.ini": "[pytest]\naddopts = -p calc.outcomes\n",
    "pyproject.toml": '[tool.pytest.ini_options]\naddopts = "-p calc.outcomes"\n',
}


@pytest.mark.parametrize("config", list(CONFIG_ATTACKS))
def test_test_config_loading_a_plugin_is_dropped(config, grade_files, local_backend, tree, instance, calc):
    files = {config: CONFIG_ATTACKS[config], **PLUGIN}
    assert unguarded(local_backend, tree, instance, calc.patch(files)).resolved
    result = grade_files(files)
    assert_unresolved(result)
    assert result.dropped_files == [config]
    assert "calc/outcomes.py" in result.graded_patch  # harmless once nothing loads it


def test_test_config_deselecting_the_failing_tests_is_dropped(grade_files):
    deselect = " ".join(f"--deselect {shlex.quote(t)}" for t in FAIL_TO_PASS)
    result = grade_files({"setup.cfg": SETUP_CFG + f"addopts = {deselect} -p no:warnings\n"})
    assert_unresolved(result)
    assert result.dropped_files == ["setup.cfg"]
    assert result.tests is not None and result.tests.fail_to_pass_failure == FAIL_TO_PASS


PASSING_TESTS = "\n\n".join(
    f"def {name}():\n    assert True"
    for name in ["test_add", "test_sub", "test_clamp_inside", "test_clamp_above"]
)


@pytest.mark.parametrize(
    "files",
    [
        {"tests/test_calc.py": TEST_CALC.replace("assert clamp(", "assert True or clamp(")},
        {"tests/test_calc.py": PASSING_TESTS + "\n"},
        {"tests/test_calc.py": None},
        {"tests/test_calc.py": None, "tests/test_calc_v2.py": TEST_CALC},  # a rename under -M
    ],
    ids=["assert-true", "rewritten", "deleted", "renamed"],
)
def test_edits_to_the_test_files_are_dropped(files, grade_files):
    result = grade_files(files)
    assert_unresolved(result)
    assert "tests/test_calc.py" in result.dropped_files and result.graded_patch == ""
    assert result.tests is not None and result.tests.pass_to_pass_success == PASS_TO_PASS


EARLY_EXTRA = """\
def test_clamp_narrow_interval():
    assert True


def test_agent_only():
    assert True
"""


def test_pre_creating_the_test_patch_file_is_dropped(grade_files):
    result = grade_files({"tests/test_extra.py": EARLY_EXTRA})
    assert_unresolved(result)
    assert result.dropped_files == ["tests/test_extra.py"]
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_extra.py::test_clamp_narrow_interval"] == TestStatus.FAILED
    assert "tests/test_extra.py::test_agent_only" not in result.test_run.statuses


def test_pre_creating_the_test_patch_file_with_a_real_fix_resolves_on_the_real_test(grade_files):
    result = grade_files({"tests/test_extra.py": EARLY_EXTRA, "calc/__init__.py": CALC_FIXED})
    assert result.status == "resolved" and result.reward == 1.0, result.reason
    assert result.dropped_files == ["tests/test_extra.py"]
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_extra.py::test_clamp_narrow_interval"] == TestStatus.PASSED
    assert "tests/test_extra.py::test_agent_only" not in result.test_run.statuses


def test_test_patch_paths_are_protected_wherever_they_are(grade_files, calc):
    """A test patch may add a file no name rule covers; the agent's version of it is dropped all the same."""
    odd = calc.patch({"calc/checks_extra.py": "def test_odd():\n    assert False\n"})
    result = grade_files({"calc/checks_extra.py": "X = 1\n"}, test_patch=calc.test_patch + odd)
    assert result.dropped_files == ["calc/checks_extra.py"]
    assert result.status == "unresolved"  # not "error": the test patch still applied


START_UP = 'import os\nos.environ["PYTEST_PLUGINS"] = "calc.outcomes"\n'


@pytest.mark.parametrize(
    "files",
    [
        {"sitecustomize.py": START_UP},
        {"usercustomize.py": START_UP},
        {"calc/sitecustomize.py": START_UP},
        {"calc-hooks.pth": START_UP.replace("\n", "; ", 1)},
    ],
    ids=["sitecustomize", "usercustomize", "sitecustomize-in-package", "pth"],
)
def test_start_up_hooks_are_dropped(files, grade_files, local_backend, tree, instance, calc):
    files = {**files, **PLUGIN}
    result = grade_files(files)
    assert_unresolved(result)
    assert result.dropped_files == [next(iter(files))]
    # A second layer: even applied, the venv's own sitecustomize/usercustomize win over the repository's,
    # and a .pth runs only from a site directory, which the repository is not.
    assert not unguarded(local_backend, tree, instance, calc.patch(files)).resolved


def test_package_metadata_with_a_pytest_plugin_entry_point_is_dropped(
    grade_files, local_backend, tree, instance, calc
):
    """The repository is on sys.path, so a *.dist-info there is an installed distribution to pytest, and its
    `pytest11` entry point a plugin it loads at start-up."""
    files = {
        "calc_tools-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: calc-tools\nVersion: 1.0\n",
        "calc_tools-1.0.dist-info/entry_points.txt": "[pytest11]\ncalc_tools = calc.outcomes\n",
        **PLUGIN,
    }
    assert resolved_with_autoload(local_backend, tree, instance, calc.patch(files))
    result = grade_files(files)
    assert_unresolved(result)
    assert result.dropped_files == sorted(f for f in files if ".dist-info/" in f)
    assert not unguarded(local_backend, tree, instance, calc.patch(files)).resolved  # no autoload either


UPPER_CASE_METADATA = {
    "dist-info": {
        "Evil-1.0.DIST-INFO/METADATA": "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
        "Evil-1.0.DIST-INFO/entry_points.txt": "[pytest11]\nevil = evil_plugin\n",
    },
    "egg-info": {
        "Evil.EGG-INFO/PKG-INFO": "Metadata-Version: 1.1\nName: evil\nVersion: 1.0\n",
        "Evil.EGG-INFO/entry_points.txt": "[pytest11]\nevil = evil_plugin\n",
    },
}


@pytest.fixture(params=["local", "docker"])
def grading_backend(request) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")


def resolved_with_autoload(backend: Backend, tree: PreparedTree, instance: SWEInstance, patch: str) -> bool:
    """The whole patch applied and pytest run as an agent would, plugin autoload on: is the attack real?"""
    with backend.create(sandbox_spec(tree)) as sandbox:
        sandbox.apply_patch(patch, cwd=REPO_DIR)
        sandbox.apply_patch(instance.test_patch, cwd=REPO_DIR)
        command = "python -m pytest -q -p no:cacheprovider --report-log=/tmp/r.jsonl tests; cat /tmp/r.jsonl"
        result = sandbox.exec(command, cwd=REPO_DIR, timeout=60)
    statuses, _, _ = parse_report_log(result.stdout[result.stdout.index('{"pytest_version"') :])
    return verdict(statuses, instance.FAIL_TO_PASS, instance.PASS_TO_PASS).resolved


@pytest.mark.parametrize("kind", list(UPPER_CASE_METADATA))
def test_upper_case_package_metadata_with_a_plugin_does_not_load(kind, grading_backend, tree, instance, calc):
    """importlib.metadata lowercases folder names, so `Evil-1.0.DIST-INFO` at the repository root (on
    sys.path) is an installed distribution whose `pytest11` plugin pytest loads: dropped whatever its case,
    and grading loads no plugin by entry point at all."""
    files = {**UPPER_CASE_METADATA[kind], "evil_plugin.py": OUTCOME_REWRITER}
    patch = calc.patch(files)
    assert resolved_with_autoload(grading_backend, tree, instance, patch)  # the attack works...
    result = grade(grading_backend, tree, instance, patch, timeout=60)
    assert_unresolved(result)  # ...but not against the grader
    assert result.dropped_files == sorted(UPPER_CASE_METADATA[kind])
    assert not unguarded(grading_backend, tree, instance, patch).resolved  # nor applied whole: no autoload


# --- shadowing pytest or the standard library from the repository root --------------------------------

SHADOW = """\
import os
import sys

FORGED = {forged!r}
for arg in sys.argv:
    if arg.startswith("--report-log="):
        with open(arg.split("=", 1)[1], "w") as report:
            report.write(FORGED)
os._exit(0)
"""


@pytest.mark.parametrize("module", ["pytest.py", "argparse.py"])
def test_modules_at_the_root_do_not_shadow_pytest_or_the_stdlib(module, grade_files):
    """`python -m pytest` puts the working directory first on sys.path; the grader must not run the repo's
    `pytest.py` (or `argparse.py`, which pytest imports) instead of pytest."""
    result = grade_files({module: SHADOW.format(forged=FORGED)})
    assert_unresolved(result)
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_calc.py::test_clamp_inside"] == TestStatus.FAILED


# --- the report and the exit code ----------------------------------------------------------------------

FORGE = """
import atexit
import glob
import os
import sys

FORGED = {forged!r}


def _forge():
    # everywhere a report could be: the path pytest was given, its inherited descriptor, the report folder,
    # and any report-like file under /tmp
    targets = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--report-log=")]
    targets += glob.glob("/tmp/orchard-report-*/*") + glob.glob("/tmp/**/*.json*", recursive=True)
    for target in targets:
        try:
            with open(target, "w") as report:
                report.write(FORGED)
        except OSError:
            pass
    try:
        os.write(3, FORGED.encode())
    except OSError:
        pass
    {exit}


{when}
"""
# A forgery that agrees with the exit code pytest will really have: it lists one failure of its own.
FAKE_FAILURE = {
    "$report_type": "TestReport",
    "nodeid": "tests/test_calc.py::t",
    "when": "call",
    "outcome": "failed",
}
FORGED_WITH_A_FAILURE = forged_report_log(ALL_TESTS, exit_status=1).replace(
    '{"exitstatus"', json.dumps(FAKE_FAILURE) + '\n{"exitstatus"'
)


@pytest.mark.parametrize(
    ("when", "exit", "forged", "expected"),
    [
        ("_forge()", "pass", FORGED_WITH_A_FAILURE, "unresolved"),
        ("atexit.register(_forge)", "pass", FORGED_WITH_A_FAILURE, "unresolved"),
        ("atexit.register(_forge)", "os._exit(0)", FORGED, "error"),
    ],
    ids=["at-import", "at-exit", "at-exit-then-exit-0"],
)
def test_a_forged_report_does_not_replace_pytests(when, exit, forged, expected, grade_files):
    """The test process can find where the report goes (its argv names it) and write there, during the run or
    after pytest's last write; pytest's own lines still reach the grader, and a test's worst line wins."""
    prelude = FORGE.format(forged=forged, exit=exit, when=when)
    result = grade_files({"calc/__init__.py": calc_with(prelude)})
    assert result.status == expected and result.reward == 0.0, result.reason
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_calc.py::test_clamp_inside"] == TestStatus.FAILED


@pytest.mark.parametrize(
    "library",
    [
        calc_with("import os\nos._exit(0)"),
        CALC_BUGGY.replace("    return max(lo", "    import os\n\n    os._exit(0)\n    return max(lo"),
        calc_with("import sys\nsys.exit(0)"),
    ],
    ids=["os._exit-at-import", "os._exit-in-a-test", "sys.exit-at-import"],
)
def test_exiting_zero_without_a_report_is_an_error(library, grade_files):
    result = grade_files({"calc/__init__.py": library})
    assert result.status == "error" and result.reward == 0.0, result.reason


def test_garbage_in_the_report_stream_is_an_error(grade_files):
    result = grade_files(
        {"calc/__init__.py": calc_with("import os\nos.write(3, b'{not json\\n')", fixed=True)}
    )
    assert result.status == "error" and result.reward == 0.0
    assert "not JSON" in result.reason


def test_a_report_over_the_output_cap_is_an_error(local_backend, tree, instance):
    result = grade(local_backend, tree, instance, instance.patch, max_output=1000)
    assert result.status == "error" and result.reward == 0.0
    assert "output cap" in result.reason


def _gz(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


def test_unpack_report_reads_appended_members_and_rejects_the_rest():
    real, extra = '{"a": 1}\n', '{"b": 2}\n'
    joined = base64.b64encode(gzip.compress(real.encode()) + gzip.compress(extra.encode())).decode()
    assert unpack_report(joined) == (real + extra).encode()
    assert unpack_report("") == b""
    for bad in ["not base64!", base64.b64encode(b"plain").decode(), _gz(real)[:-8]]:
        with pytest.raises(ReportError):
            unpack_report(bad)
    with pytest.raises(ReportError, match="larger than"):
        unpack_report(_gz("x" * 10_000), limit=1000)  # a decompression bomb stops at the limit


def test_hanging_tests_time_out_unresolved(local_backend, tree, instance, calc):
    library = CALC_BUGGY.replace(
        "    return max(lo", "    import time\n\n    time.sleep(600)\n    return max(lo"
    )
    result = grade(local_backend, tree, instance, calc.patch({"calc/__init__.py": library}), timeout=3)
    assert_unresolved(result)
    assert result.test_run is not None and result.test_run.timed_out
    assert "did not finish" in result.reason


# --- holes no grader of in-process Python tests closes (documented, strict xfail) ----------------------

IN_PROCESS_PLUGIN = """
import gc

import _pytest.config
import pytest


class _Always:
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        outcome.get_result().outcome = "passed"


for _obj in gc.get_objects():
    if isinstance(_obj, _pytest.config.Config) and not _obj.pluginmanager.has_plugin("always"):
        _obj.pluginmanager.register(_Always(), "always")
"""


def test_library_registering_a_pytest_plugin_from_inside_the_process_is_caught(grade_files):
    """The library can register a hook rewriting every outcome (as a conftest would): the canary passes
    with the rest, and the diff reaches for pytest's internals."""
    result = grade_files({"calc/__init__.py": calc_with(IN_PROCESS_PLUGIN)})
    assert_unresolved(result)
    assert result.test_run is not None
    assert result.test_run.statuses["tests/test_calc.py::test_clamp_inside"] == TestStatus.PASSED  # it worked
    assert result.test_run.statuses[result.canary] == TestStatus.PASSED
    assert f"the canary test {result.canary}" in result.reason
    assert_flagged(result, "canary", "_pytest", "gc.get_objects", "a pytest hook")


def test_library_forging_the_report_and_exiting_before_any_test_is_caught(grade_files):
    """Code in pytest's process can write a whole report where pytest would and exit before pytest writes a
    line: the forgery agrees with the exit code, but it cannot name a canary it never saw."""
    prelude = FORGE.format(forged=FORGED, exit="os._exit(0)", when="_forge()")
    result = grade_files({"calc/__init__.py": calc_with(prelude)})
    assert_unresolved(result)
    assert result.test_run is not None and result.test_run.exit_code == 0
    assert result.test_run.statuses["tests/test_calc.py::test_clamp_inside"] == TestStatus.PASSED  # forged
    assert "is missing from the report" in result.reason
    assert_flagged(result, "canary", "os._exit", "where the test report goes")


def assert_flagged(result: GradeResult, *words: str) -> None:
    """Every word appears in some reason of `result.suspicious`."""
    for word in words:
        assert any(word in reason for reason in result.suspicious), (word, result.suspicious)


@pytest.mark.xfail(
    strict=True,
    reason="known limit: a forgery that reads the canary's name from the test list and hides its calls from "
    "the diff scan (names built from pieces) is out of reach of both; in-process tests cannot rule it out",
)
def test_a_forgery_that_names_the_canary_and_hides_from_the_scan(grade_files):
    prelude = EVASIVE_FORGE.format(ids=ALL_TESTS)
    result = grade_files({"calc/__init__.py": calc_with(prelude)})
    assert result.suspicious or result.reward == 0.0, result


# The same forgery as above with every word the scan looks for built from pieces at run time, and the canary
# read from the file list pytest was given (its path is in argv) and reported as failed.
EVASIVE_FORGE = """
import json
import os
import sys

_IDS = {ids!r}


def _records():
    listed = [a[1:] for a in sys.argv if a.startswith("@")]
    files = open(listed[0]).read().split() if listed else []
    yield {{"$report_type": "SessionStart"}}
    for nodeid in _IDS:
        yield {{"$report_type": "TestReport", "nodeid": nodeid, "when": "call", "outcome": "passed"}}
    for name in files:
        if name.split("/")[-1] not in ("test_calc.py", "test_extra.py"):
            source = open(name).read()
            function = source.split("def ", 1)[1].split("(", 1)[0]
            failed = {{"$report_type": "TestReport", "nodeid": name + "::" + function, "when": "call"}}
            yield {{**failed, "outcome": "failed"}}
    yield {{"$report_type": "SessionFinish", "exitstatus": 1}}


if any(a.startswith("@") for a in sys.argv):
    _text = "".join(json.dumps(r) + chr(10) for r in _records())
    os.write(int("3"), _text.encode())
    getattr(os, "_" + "exit")(1)
"""


# --- the agent's sandbox: its git history is irrelevant, its diff is untrusted text --------------------


@pytest.fixture
def agent_sandbox(local_backend, tree) -> Iterator[Sandbox]:
    sandbox = local_backend.create(sandbox_spec(tree))
    yield sandbox
    sandbox.close()


def sh(sandbox: Sandbox, command: str) -> str:
    result = sandbox.exec(command, cwd=REPO_DIR, timeout=60)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_extract_patch_sees_through_commits_branches_and_resets(agent_sandbox, local_backend, tree, instance):
    agent_sandbox.write_file(f"{REPO_DIR}/calc/__init__.py", CALC_FIXED)
    agent_sandbox.write_file(f"{REPO_DIR}/calc/extra.py", "EXTRA = 1\n")
    agent_sandbox.write_file(f"{REPO_DIR}/calc/later.py", "LATER = 1\n")
    identity = "-c user.name=agent -c user.email=agent@example.invalid"
    sh(agent_sandbox, f"git {identity} add calc/__init__.py calc/extra.py && git {identity} commit -qm fix")
    sh(agent_sandbox, "git checkout -qb feature")
    sh(agent_sandbox, f"git {identity} commit -q --allow-empty -m more && git reset -q --soft HEAD~1")
    sh(agent_sandbox, f"git {identity} commit -q --amend -m 'fix, amended'")
    sh(agent_sandbox, "git checkout -q --orphan fresh && git rm -rq --cached .")
    sh(agent_sandbox, f"git {identity} commit -q --allow-empty -m 'no files at all'")
    patch = extract_patch(agent_sandbox, tree.head)
    assert "calc/extra.py" in patch and "calc/later.py" in patch and "min(x, hi)" in patch
    assert "tests/" not in patch  # the orphan commit removed nothing from the working tree
    result = grade(local_backend, tree, instance, patch)
    assert result.status == "resolved" and result.reward == 1.0, result.reason


def test_extract_patch_without_the_base_commit_is_the_agents_doing(agent_sandbox, tree):
    """The agent broke its repository: unresolved with a reason, not an infrastructure error to retry."""
    sh(agent_sandbox, "rm -rf .git && git init -q")
    with pytest.raises(UnusableDiff, match="git cannot read") as caught:
        extract_patch(agent_sandbox, tree.head)
    assert not isinstance(caught.value, OrchardError)
    result = unusable_result(caught.value)
    assert result.status == "unresolved" and result.reward == 0.0 and "git cannot read" in result.reason


def test_an_oversized_diff_is_unresolved_not_an_infrastructure_error(local_backend, tree):
    with local_backend.create(sandbox_spec(tree, max_output=20_000)) as sandbox:
        sandbox.write_file(f"{REPO_DIR}/debug.log", "a log line\n" * 5_000)
        with pytest.raises(UnusableDiff, match="larger than the sandbox output cap") as caught:
            extract_patch(sandbox, tree.head)
    assert not isinstance(caught.value, OrchardError)
    assert unusable_result(caught.value).status == "unresolved"


def traditional_addition(path: str, text: str) -> str:
    """A plain (not git) unified diff creating `path`: git apply reads it after any git section's hunks."""
    lines = text.splitlines()
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n" + "".join(f"+{ln}\n" for ln in lines)


def test_a_crafted_diff_cannot_smuggle_a_protected_file(agent_sandbox, local_backend, tree, instance, calc):
    """The agent controls the text extract_patch returns (a `git` of its own first on PATH, or its .git);
    a protected file hidden where the splitter does not look must still not reach the tests."""
    readme = calc.patch({"README.md": "# calc\n\nArithmetic helpers!\n"})
    crafted = readme + traditional_addition("conftest.py", CONFTEST)
    agent_sandbox.write_file("/tmp/crafted.patch", crafted)
    fake_git = '#!/bin/sh\ncase "$*" in *" diff "*) cat /tmp/crafted.patch;; esac\n'
    agent_sandbox.write_file("/workspace/.venv/bin/git", fake_git, 0o755)
    patch = extract_patch(agent_sandbox, tree.head)
    assert patch == crafted
    assert unguarded(local_backend, tree, instance, patch).resolved  # git apply does create conftest.py
    result = grade(local_backend, tree, instance, patch)
    assert_unresolved(result)
    assert "conftest.py" in result.dropped_files


README_EDIT = {"README.md": "# calc\n\nArithmetic helpers!\n"}
# What a diff the splitter misreads can hide, each after an honest-looking README section.
CRAFTED_TAILS = {
    "plain-diff-editing-a-test": (
        "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -1,4 +1,4 @@\n import pytest\n \n"
        "-from calc import add, clamp, sub\n"
        "+from calc import add, sub; clamp = lambda x, a, b: min(max(x, a), b)\n \n"
    ),
    "git-rename-old-new-into-conftest": (
        "diff --git a/calc/helpers.py b/calc/helpers.py\nrename old README.md\nrename new conftest.py\n"
    ),
}


@pytest.mark.parametrize("tail", list(CRAFTED_TAILS))
def test_sections_the_splitter_misreads_are_caught(tail, local_backend, tree, instance, calc):
    patch = calc.patch(README_EDIT) + CRAFTED_TAILS[tail]
    with local_backend.create(sandbox_spec(tree)) as sandbox:
        sandbox.apply_patch(patch, cwd=REPO_DIR)  # git apply takes it whole: the attack is real
        changed = sh(sandbox, "git status --porcelain --untracked-files=all")
    assert "tests/test_calc.py" in changed or "conftest.py" in changed
    result = grade(local_backend, tree, instance, patch)
    assert_unresolved(result)
    assert "past the splitter" in result.reason
    assert {"tests/test_calc.py", "conftest.py"} & set(result.dropped_files)


# --- infrastructure faults are errors, never passes ------------------------------------------------------


def test_a_test_command_that_writes_no_report_is_an_error(grade_files):
    result = grade_files({"calc/__init__.py": CALC_FIXED}, test_cmd="true")
    assert result.status == "error" and result.reward == 0.0
    assert "no usable test report" in result.reason


def test_a_test_patch_that_does_not_apply_is_an_error(grade_files, calc):
    broken = calc.patch({"README.md": "changed\n"}).replace("Arithmetic helpers.", "Something else.")
    result = grade_files({"calc/__init__.py": CALC_FIXED}, test_patch=broken)
    assert result.status == "error" and result.reward == 0.0
    assert "test_patch does not apply" in result.reason


def _run(exit_code: int, **statuses: TestStatus) -> TestRun:
    return TestRun(exit_code=exit_code, statuses={f"t.py::{k}": v for k, v in statuses.items()})


@pytest.mark.parametrize(
    ("run", "problem"),
    [
        (_run(0, a=TestStatus.PASSED), None),
        (_run(1, a=TestStatus.FAILED), None),
        (_run(1, a=TestStatus.PASSED, b=TestStatus.ERROR), None),
        (_run(0, a=TestStatus.PASSED, b=TestStatus.XFAIL, c=TestStatus.SKIPPED), None),
        (_run(5), None),
        (_run(1, a=TestStatus.PASSED), "has no failures but pytest exited 1"),
        (_run(2, a=TestStatus.PASSED), "has no failures but pytest exited 2"),
        (_run(0, a=TestStatus.FAILED), "lists failures but pytest exited 0"),
        (_run(3, a=TestStatus.PASSED), "internal or usage error"),
        (_run(4), "internal or usage error"),
        (_run(137, a=TestStatus.PASSED), "internal or usage error"),
    ],
)
def test_report_and_exit_code_must_agree(run, problem):
    found = _consistency_error(run)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_runs_are_in_their_own_report_folder(local_backend, tree, instance):
    """Each run writes to a fresh, unguessable folder: no report of an earlier run can be read back."""
    with local_backend.create(sandbox_spec(tree)) as sandbox:
        first = run_tests(sandbox, instance, ALL_TESTS, 60)
        second = run_tests(sandbox, instance, ALL_TESTS, 60)
        folders = sh(sandbox, "ls -d /tmp/orchard-report-*").split()
    assert first.statuses == second.statuses and len(set(folders)) == 2
    assert all(len(f.rsplit("-", 1)[1]) == 16 for f in folders)


def test_no_attack_file_left_in_the_shared_tree(tree):
    """Grading and the agent write to their sandboxes' own layers, never to the prepared tree."""
    repo = tree.path / "repo"
    assert (repo / "calc" / "__init__.py").read_text() == CALC_BUGGY
    assert not (repo / "conftest.py").exists() and not (repo / "tests" / "test_extra.py").exists()
    assert not (tree.path / ".venv" / "bin" / "git").exists()
