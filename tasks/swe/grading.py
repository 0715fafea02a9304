"""Grading in a clean copy, the way SWE-bench grades, hardened against an agent that games the tests.

The agent's sandbox is only read for its diff. A fresh sandbox from the prepared tree (checked against the
tree's manifest first) gets that diff minus every test, test-config and start-up-hook file (so those stay
the instance's own), then the instance's test patch; pytest runs with plugin autoload off and streams a
report log (pytest-reportlog) out of the sandbox as it runs, and the report must agree with pytest's exit
code. A missing or unreadable report is an infrastructure error, never a pass. Code the tests import runs
inside pytest's process and can still forge outcomes there: a canary test that must fail and a scan of the
diff make that visible (`suspicious`; see tests/test_swe_grading.py for what is and is not caught).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import shlex
import time
import zlib
from typing import Literal

from pydantic import BaseModel, Field

from orchard_envs.errors import PatchError, SandboxError
from orchard_envs.sandbox import Backend, Sandbox, SandboxSpec
from orchard_envs.tasks.swe.instance import SWEInstance
from orchard_envs.tasks.swe.patches import is_protected, split_patch, suspicious_changes, touched_files
from orchard_envs.tasks.swe.prepare import REPO_DIR, PreparedTree, TreeChanged, check_tree, sandbox_spec
from orchard_envs.tasks.swe.report import ReportError, TestsReport, TestStatus, parse_report_log, verdict

# pytest: 0 all passed, 1 some failed, 2 interrupted (e.g. collection errors), 5 nothing collected.
AGENT_EXIT_CODES = {0, 1, 2, 5}
GIT = "git -c core.fsmonitor=false -c core.hooksPath=/dev/null -c diff.external="
# `python -m pytest` would put the repository root first on sys.path, where a `pytest.py` (or a module named
# like one of the standard library's) of the agent's would run instead; the venv's .pth still adds the root.
# No plugin loads by entry point: the repository is on sys.path, so any *.dist-info in it (in any case:
# importlib.metadata lowercases) would be an installed distribution whose `pytest11` plugin pytest loads.
TEST_ENV = {"PYTHONSAFEPATH": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
REPORT_PLUGIN_MODULE = "pytest_reportlog.plugin"
LOG_TAIL = 4000
REPORT_LIMIT = 256 * 1024 * 1024  # a decompressed report log larger than this is an error, not a host OOM
REPORT_OUTPUT = 64 * 1024 * 1024  # the report leaves on stdout: room for suites of tens of thousands of tests


def grading_spec(tree: PreparedTree, **spec: object) -> SandboxSpec:
    """The spec of a sandbox that runs tests for a verdict (grading, and the builder's screening)."""
    return sandbox_spec(tree, **{"max_output": REPORT_OUTPUT, **spec})


class TestRun(BaseModel):
    """One pytest run in a sandbox: per-test outcomes from the report, plus the process's own account."""

    __test__ = False
    statuses: dict[str, TestStatus] = Field(default_factory=dict)
    messages: dict[str, str] = Field(default_factory=dict)
    exit_code: int
    timed_out: bool = False
    duration: float = 0.0
    log_tail: str = ""
    error: str | None = Field(None, description="why the run's outcome cannot be trusted (infrastructure)")


class GradeResult(BaseModel):
    """The grade of one SWE episode: status, reward, the tests' report and the agent's diff."""

    status: Literal["resolved", "unresolved", "error"]
    reward: float
    reason: str = ""
    tests: TestsReport | None = None
    patch: str = Field("", description="the agent's whole diff against the base commit")
    graded_patch: str = Field("", description="what was applied for grading: the diff minus protected files")
    dropped_files: list[str] = Field(default_factory=list, description="protected files the diff touched")
    suspicious: list[str] = Field(
        default_factory=list,
        description="reasons to doubt the outcome: the diff reaches into pytest or the process, or the "
        "canary test did not fail; a resolve with reasons counts apart (orchard-bench), earns no RL reward",
    )
    canary: str = Field("", description="node id of the test added at grading time that must fail")
    test_run: TestRun | None = None
    timings: dict[str, float] = Field(default_factory=dict)


class UnusableDiff(Exception):  # the agent's doing, so deliberately not an OrchardError
    """The agent's sandbox yields no diff to grade (too large, or its repository broken): the agent's doing,
    so the episode is unresolved with this reason, not an infrastructure error to retry."""


def extract_patch(sandbox: Sandbox, head: str) -> str:
    """The agent's work as one diff against the base commit, new files included, hooks and helpers off."""
    command = f"cd {REPO_DIR} && {GIT} add -A && {GIT} diff --cached --binary --no-ext-diff --no-color {head}"
    result = sandbox.exec(command, timeout=120, session=False)
    if result.exit_code != 0:
        raise UnusableDiff(f"git cannot read the agent's diff: {result.output.strip()[-500:]}")
    if result.truncated:
        raise UnusableDiff(
            f"the agent's diff is larger than the sandbox output cap ({sandbox.spec.max_output} bytes); "
            "files such as logs or data written into the repository count"
        )
    return result.stdout


def unusable_result(exc: UnusableDiff) -> GradeResult:
    """The verdict on an episode whose diff cannot be read: unresolved, with the reason."""
    return GradeResult(status="unresolved", reward=0.0, reason=str(exc))


class Canary:
    """A test added at grading time that must fail, under names the agent cannot know in advance: if it
    passes or goes missing, something in pytest's process rewrote or forged the outcomes."""

    def __init__(self) -> None:
        self.path = f"test_{secrets.token_hex(8)}.py"
        self.function = f"test_{secrets.token_hex(8)}"
        self.nodeid = f"{self.path}::{self.function}"
        self.source = f"def {self.function}():\n    raise AssertionError('a canary: this test must fail')\n"

    def problem(self, statuses: dict[str, TestStatus]) -> str | None:
        """Why the report cannot be trusted (the canary did not fail), or None if it can."""
        found = statuses.get(self.nodeid)
        if found == TestStatus.FAILED:
            return None
        what = "is missing from the report" if found is None else f"reports {found.value}"
        return f"the canary test {self.nodeid}, which must fail, {what}: the outcomes were tampered with"


def unpack_report(encoded: str, limit: int = REPORT_LIMIT) -> bytes:
    """The report log from run_tests' stdout (base64 of gzip members), at most `limit` bytes of it."""
    try:
        data = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise ReportError(f"the report stream is not base64 ({exc})") from None
    out = bytearray()
    while data:  # one gzip member per writer: anything the tests appended is a member of its own
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise ReportError(f"the report stream is not gzip ({exc})") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise ReportError(f"the report is larger than {limit} bytes")
        if not inflater.eof:
            raise ReportError("the report stream is cut short")
        data = inflater.unused_data
    return bytes(out)


def run_tests(
    sandbox: Sandbox, instance: SWEInstance, tests: list[str], timeout: float, canary: Canary | None = None
) -> TestRun:
    """Run the instance's test command on the files of `tests` (node ids or paths; none: discovery).

    Whole files, as SWE-bench runs them, not node ids: an id that a patch makes disappear (a changed
    parametrization, say) must count as a missing test, not stop pytest with a usage error. A `canary`'s
    file is written into the repository and run among them, at a place no one can predict.
    """
    folder = f"/tmp/orchard-report-{secrets.token_hex(8)}"
    selection = ""
    if tests:
        files = sorted({test.split("::", 1)[0] for test in tests})
        if canary is not None:
            sandbox.write_file(f"{REPO_DIR}/{canary.path}", canary.source)
            files.insert(secrets.randbelow(len(files) + 1), canary.path)
        sandbox.write_file(f"{folder}/tests.txt", "\n".join(files) + "\n")
        selection = f"@{folder}/tests.txt"
    plugins = " ".join(f"-p {shlex.quote(name)}" for name in [REPORT_PLUGIN_MODULE, *instance.pytest_plugins])
    # The report leaves the sandbox on stdout as pytest writes it (gzip, base64), never as a file: the tests
    # (the agent's code) can add to that stream but not take pytest's lines back, nor rewrite a file after
    # pytest's last write (an atexit handler runs then), and parse_report_log keeps each test's worst line.
    # pytest's own output goes to a log, of which stderr gets the end.
    log = f"{folder}/log"
    command = (
        f"mkdir -p -m 700 {folder} && cd {REPO_DIR} && {{ {instance.test_cmd} {plugins} -p no:cacheprovider "
        f"--report-log=/dev/fd/3 {selection} 3>&1 >{log} 2>&1 | gzip | base64 -w0; "
        f"rc=${{PIPESTATUS[0]}}; tail -c {LOG_TAIL} {log} >&2; (exit $rc); }}"
    )
    # The session (a shell already running in a sandbox nothing else uses) saves a process start per run.
    result = sandbox.exec(command, timeout=timeout, env=TEST_ENV)
    run = TestRun(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration=result.duration,
        log_tail=result.stderr[-LOG_TAIL:],
    )
    if result.timed_out:
        return run  # the tests (the agent's code) hung: a failure, not an infrastructure fault
    try:
        if result.truncated:
            raise ReportError("the report is larger than the sandbox output cap (max_output)")
        run.statuses, run.messages, reported = parse_report_log(unpack_report(result.stdout))
    except ReportError as exc:
        run.error = f"no usable test report ({exc}); pytest exited {result.exit_code}"
    else:
        if reported != result.exit_code:
            run.error = f"the report ends with exit status {reported} but pytest exited {result.exit_code}"
    return run


def protected_changes(sandbox: Sandbox, patch: str, also_protected: set[str]) -> list[str]:
    """The protected paths `patch` touches as git apply itself reads it (old and new names: also -R).

    The agent controls the diff's text (a `git` of its own on PATH, or its .git), and git apply reads more
    than `split_patch` parses: a plain ---/+++ diff after a section's hunks creates any file, say.
    """
    staged = f"/tmp/.orchard-{secrets.token_hex(8)}.patch"
    sandbox.write_file(staged, patch)
    listing = f"{GIT} apply --numstat -z {staged} && {GIT} apply -R --numstat -z {staged}"
    result = sandbox.exec(f"cd {REPO_DIR} && {listing}; s=$?; rm -f {staged}; exit $s", timeout=120)
    if result.exit_code != 0:
        raise PatchError(f"git apply cannot read the patch: {result.output.strip()[-500:]}")
    paths = {field.split("\t", 2)[-1] for field in result.stdout.split("\0")} - {""}
    return sorted(p for p in paths if is_protected(p) or p in also_protected)


def _consistency_error(run: TestRun) -> str | None:
    """Cross-check the report against pytest's exit code: failures exactly when pytest says so."""
    if run.exit_code not in AGENT_EXIT_CODES:
        return f"pytest exited {run.exit_code} (internal or usage error): {run.log_tail[-300:]}"
    failed = any(s in (TestStatus.FAILED, TestStatus.ERROR) for s in run.statuses.values())
    if failed == (run.exit_code in (0, 5)):
        return f"the report {'lists' if failed else 'has no'} failures but pytest exited {run.exit_code}"
    return None


def grade(
    backend: Backend,
    tree: PreparedTree,
    instance: SWEInstance,
    patch: str,
    *,
    timeout: float = 300.0,
    sandbox: Sandbox | None = None,
    **spec: object,
) -> GradeResult:
    """Grade `patch` (the agent's diff) for `instance`; reward 1.0 iff resolved.

    `sandbox`, if given, must be a fresh sandbox of `tree` that nothing has touched (the env creates one
    while the agent works, so grading does not wait for a sandbox); it is closed afterwards. Raises
    TreeChanged (an infrastructure error) if the prepared tree changed, and SandboxError if two sandboxes'
    copies of an intact tree both came out wrong.
    """
    started = time.perf_counter()
    test_files = touched_files(instance.test_patch)
    graded, dropped = split_patch(patch, test_files)
    result = GradeResult(
        status="unresolved",
        reward=0.0,
        patch=patch,
        graded_patch=graded,
        dropped_files=dropped,
        suspicious=suspicious_changes(graded),
    )
    canary = Canary()
    with _verified_sandbox(backend, tree, sandbox, spec, result.timings) as sandbox:
        if problem := _apply(sandbox, instance, graded, test_files, result):
            return problem
        result.timings["apply"] = time.perf_counter() - started - sum(result.timings.values())
        tests = [*instance.FAIL_TO_PASS, *instance.PASS_TO_PASS]
        run = run_tests(sandbox, instance, tests, timeout, canary if tests else None)
    result.test_run, result.timings["tests"] = run, run.duration
    result.canary = canary.nodeid if tests else ""
    result.timings["total"] = time.perf_counter() - started
    return _judge(result, run, instance, canary if tests else None, timeout)


def _verified_sandbox(
    backend: Backend, tree: PreparedTree, sandbox: Sandbox | None, spec: dict, timings: dict[str, float]
) -> Sandbox:
    """A grading sandbox whose copy of the tree `check_tree` accepts. A copy gone wrong while the tree is
    intact (a SandboxError, not TreeChanged) gets one fresh sandbox more; a changed tree raises at once."""
    for attempt in (1, 2):
        began = time.perf_counter()
        sandbox = sandbox or backend.create(grading_spec(tree, **spec))
        made = time.perf_counter()
        try:
            check_tree(sandbox, tree)
        except SandboxError as exc:
            sandbox.close()
            if isinstance(exc, TreeChanged) or attempt == 2:
                raise
            sandbox = None
            continue
        finally:
            timings["sandbox"] = timings.get("sandbox", 0.0) + made - began
            timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - made
        return sandbox
    raise AssertionError("unreachable: the second attempt returns or raises")


def _apply(
    sandbox: Sandbox, instance: SWEInstance, graded: str, test_files: set[str], result: GradeResult
) -> GradeResult | None:
    """Apply the kept diff, then the test patch; the verdict if either stops grading, else None."""
    if graded.strip():
        try:
            if smuggled := protected_changes(sandbox, graded, test_files):
                result.dropped_files = sorted({*result.dropped_files, *smuggled})
                result.reason = f"the patch changes protected files past the splitter: {', '.join(smuggled)}"
                return result
            sandbox.apply_patch(graded, cwd=REPO_DIR)
        except PatchError as exc:
            result.reason = f"the agent's patch does not apply to the base commit: {exc}"
            return result
    if instance.test_patch.strip():
        try:
            sandbox.apply_patch(instance.test_patch, cwd=REPO_DIR)
        except PatchError as exc:
            return result.model_copy(
                update={"status": "error", "reason": f"test_patch does not apply: {exc}"}
            )
    return None


def _judge(
    result: GradeResult, run: TestRun, instance: SWEInstance, canary: Canary | None, timeout: float
) -> GradeResult:
    """The verdict on a finished run: infrastructure error, unresolved (with a reason) or resolved."""
    if run.error:
        return result.model_copy(update={"status": "error", "reason": run.error})
    result.tests = verdict(run.statuses, instance.FAIL_TO_PASS, instance.PASS_TO_PASS)
    # SWE-bench counts XFAIL as a pass, but a `pytest.xfail()` in the library would then pass any test it
    # reaches: a FAIL_TO_PASS test must really pass (PASS_TO_PASS keeps SWE-bench's rule).
    if xfailed := [t for t in result.tests.fail_to_pass_success if run.statuses.get(t) != TestStatus.PASSED]:
        result.tests = result.tests.model_copy(
            update={
                "fail_to_pass_success": [t for t in result.tests.fail_to_pass_success if t not in xfailed],
                "fail_to_pass_failure": [*result.tests.fail_to_pass_failure, *xfailed],
            }
        )
    if run.timed_out:
        result.reason = f"the tests did not finish within {timeout:g} s"
        return result
    problem = _consistency_error(run)
    if problem:
        return result.model_copy(update={"status": "error", "reason": problem})
    if canary is not None and (tampered := canary.problem(run.statuses)):
        result.suspicious = [*result.suspicious, tampered]
        result.reason = tampered  # outcomes that cannot be believed resolve nothing
        return result
    if result.tests.resolved:
        return result.model_copy(update={"status": "resolved", "reward": 1.0})
    failing = result.tests.fail_to_pass_failure + result.tests.pass_to_pass_failure
    result.reason = f"{len(failing)} required test(s) did not pass: {', '.join(failing[:5])}"
    return result
