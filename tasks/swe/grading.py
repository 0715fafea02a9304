"""Grading in a clean copy, the way SWE-bench grades, hardened against an agent that games the tests.

The agent's sandbox is only read for its diff. A fresh sandbox from the prepared tree gets that diff minus
every test, test-config and start-up-hook file (so those stay the instance's own), then the instance's
test patch; pytest writes a report log (pytest-reportlog) into a folder created for this run, and the
report must agree with pytest's exit code. A missing or unreadable report is an infrastructure error,
never a pass.
"""

from __future__ import annotations

import secrets
import shlex
import time
from typing import Literal

from pydantic import BaseModel, Field

from orchard_envs.errors import PatchError
from orchard_envs.sandbox import Backend, Sandbox
from orchard_envs.tasks.swe.instance import SWEInstance
from orchard_envs.tasks.swe.patches import split_patch, touched_files
from orchard_envs.tasks.swe.prepare import REPO_DIR, PreparedTree, sandbox_spec
from orchard_envs.tasks.swe.report import ReportError, TestsReport, TestStatus, parse_report_log, verdict

# pytest: 0 all passed, 1 some failed, 2 interrupted (e.g. collection errors), 5 nothing collected.
AGENT_EXIT_CODES = {0, 1, 2, 5}
GIT = "git -c core.fsmonitor=false -c core.hooksPath=/dev/null -c diff.external="


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
    status: Literal["resolved", "unresolved", "error"]
    reward: float
    reason: str = ""
    tests: TestsReport | None = None
    patch: str = Field("", description="the agent's whole diff against the base commit")
    graded_patch: str = Field("", description="what was applied for grading: the diff minus protected files")
    dropped_files: list[str] = Field(default_factory=list, description="protected files the diff touched")
    test_run: TestRun | None = None
    timings: dict[str, float] = Field(default_factory=dict)


def extract_patch(sandbox: Sandbox, head: str) -> str:
    """The agent's work as one diff against the base commit, new files included, hooks and helpers off."""
    command = f"cd {REPO_DIR} && {GIT} add -A && {GIT} diff --cached --binary --no-ext-diff --no-color {head}"
    result = sandbox.exec(command, timeout=120, session=False)
    if result.exit_code != 0:
        raise PatchError(f"could not read the agent's diff: {result.output.strip()[-500:]}")
    if result.truncated:
        raise PatchError("the agent's diff is larger than the sandbox output cap")
    return result.stdout


def run_tests(sandbox: Sandbox, instance: SWEInstance, tests: list[str], timeout: float) -> TestRun:
    """Run the instance's test command on `tests` (node ids or paths; none: pytest's discovery)."""
    folder = f"/tmp/orchard-report-{secrets.token_hex(8)}"
    selection = ""
    if tests:
        sandbox.write_file(f"{folder}/tests.txt", "\n".join(tests) + "\n")
        selection = f"@{folder}/tests.txt"
    command = (
        f"mkdir -p -m 700 {folder} && cd {REPO_DIR} && {instance.test_cmd} -p no:cacheprovider "
        f"--report-log={shlex.quote(folder + '/report.jsonl')} {selection}"
    )
    # The session (a shell already running in a sandbox nothing else uses) saves a process start per run.
    result = sandbox.exec(command, timeout=timeout)
    run = TestRun(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        duration=result.duration,
        log_tail=result.output[-4000:],
    )
    if result.timed_out:
        return run  # the tests (the agent's code) hung: a failure, not an infrastructure fault
    try:
        run.statuses, run.messages, reported = parse_report_log(sandbox.read_file(f"{folder}/report.jsonl"))
    except (ReportError, FileNotFoundError) as exc:
        run.error = f"no usable test report ({exc}); pytest exited {result.exit_code}"
    else:
        if reported != result.exit_code:
            run.error = f"the report ends with exit status {reported} but pytest exited {result.exit_code}"
    return run


def _consistency_error(run: TestRun, resolved: bool) -> str | None:
    """Cross-check the report against pytest's exit code, so a forged report alone cannot pass."""
    if run.exit_code not in AGENT_EXIT_CODES:
        return f"pytest exited {run.exit_code} (internal or usage error): {run.log_tail[-300:]}"
    failed = any(s in (TestStatus.FAILED, TestStatus.ERROR) for s in run.statuses.values())
    if resolved and run.exit_code != 0:
        return f"the report says every test passed but pytest exited {run.exit_code}"
    if failed and run.exit_code == 0:
        return "the report lists failures but pytest exited 0"
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
    while the agent works, so grading does not wait for a sandbox); it is closed afterwards.
    """
    started = time.perf_counter()
    graded, dropped = split_patch(patch, touched_files(instance.test_patch))
    result = GradeResult(
        status="unresolved", reward=0.0, patch=patch, graded_patch=graded, dropped_files=dropped
    )
    with sandbox or backend.create(sandbox_spec(tree, **spec)) as sandbox:
        result.timings["sandbox"] = time.perf_counter() - started
        if graded.strip():
            try:
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
        result.timings["apply"] = time.perf_counter() - started - result.timings["sandbox"]
        run = run_tests(sandbox, instance, [*instance.FAIL_TO_PASS, *instance.PASS_TO_PASS], timeout)
    result.test_run, result.timings["tests"] = run, run.duration
    result.timings["total"] = time.perf_counter() - started
    if run.error:
        return result.model_copy(update={"status": "error", "reason": run.error})
    result.tests = verdict(run.statuses, instance.FAIL_TO_PASS, instance.PASS_TO_PASS)
    if run.timed_out:
        result.reason = f"the tests did not finish within {timeout:g} s"
        return result
    problem = _consistency_error(run, result.tests.resolved)
    if problem:
        return result.model_copy(update={"status": "error", "reason": problem})
    if result.tests.resolved:
        return result.model_copy(update={"status": "resolved", "reward": 1.0})
    failing = result.tests.fail_to_pass_failure + result.tests.pass_to_pass_failure
    result.reason = f"{len(failing)} required test(s) did not pass: {', '.join(failing[:5])}"
    return result
