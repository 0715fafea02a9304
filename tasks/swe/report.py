"""Test outcomes from pytest's report log (pytest-reportlog), and the SWE-bench verdict over them.

Outcomes come from a report file with pytest's own node ids, never from parsing the log, which the code
under test can print anything into. (JUnit XML was tried first: it files inherited test methods under the
base class's file, so node ids cannot be rebuilt from it.) The verdict follows SWE-bench's semantics
(`swebench.harness.grading`): a test passes only if it PASSED or XFAILed; missing or skipped is a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class TestStatus(StrEnum):
    """The same names SWE-bench's log parsers emit."""

    __test__ = False
    PASSED = "PASSED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"
    XFAIL = "XFAIL"


PASSING = {TestStatus.PASSED, TestStatus.XFAIL}
_SEVERITY = [TestStatus.PASSED, TestStatus.XFAIL, TestStatus.SKIPPED, TestStatus.FAILED, TestStatus.ERROR]


class ReportError(ValueError):
    """The report is missing, empty, cut short or not a report log: an infrastructure fault, never a pass."""


def report_status(report: dict[str, Any]) -> TestStatus:
    """One phase (setup, call, teardown) of one test, as SWE-bench names outcomes."""
    outcome, when = report.get("outcome"), report.get("when")
    if outcome == "failed":
        return TestStatus.FAILED if when == "call" else TestStatus.ERROR
    if outcome == "skipped":
        return TestStatus.XFAIL if "wasxfail" in report else TestStatus.SKIPPED
    return TestStatus.PASSED


def _crash_message(report: dict[str, Any]) -> str:
    longrepr = report.get("longrepr")
    if isinstance(longrepr, dict):
        crash = longrepr.get("reprcrash")
        return str(crash.get("message") or "").strip() if isinstance(crash, dict) else ""
    lines = str(longrepr or "").strip().splitlines()
    return lines[-1] if lines else ""


def parse_report_log(text: bytes | str) -> tuple[dict[str, TestStatus], dict[str, str], int]:
    """(node id -> status, node id -> failure message, pytest's exit status) from a `--report-log` file."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if not text.strip():
        raise ReportError("the test report is empty")
    statuses: dict[str, TestStatus] = {}
    messages: dict[str, str] = {}
    exit_status: int | None = None
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # the code under test may have written anything here
            raise ReportError(f"line {number} of the test report is not JSON") from None
        kind = record.get("$report_type") if isinstance(record, dict) else None
        if kind == "SessionFinish":
            exit_status = record.get("exitstatus")
            if type(exit_status) is not int:
                raise ReportError(f"line {number} of the test report has no integer exit status")
        elif kind == "CollectReport" and record.get("outcome") == "failed":
            # A module that fails to import: its tests go missing, and the error itself is a failure.
            nodeid = str(record.get("nodeid", ""))
            statuses[nodeid] = TestStatus.ERROR
            messages.setdefault(nodeid, _crash_message(record))
        elif kind == "TestReport":
            nodeid, status = str(record.get("nodeid", "")), report_status(record)
            statuses[nodeid] = max(statuses.get(nodeid, status), status, key=_SEVERITY.index)
            if status in (TestStatus.FAILED, TestStatus.ERROR) and nodeid not in messages:
                messages[nodeid] = _crash_message(record)
    if exit_status is None:
        raise ReportError("the test report has no session end: pytest was killed or exited early")
    return statuses, messages, exit_status


class TestsReport(BaseModel):
    """FAIL_TO_PASS and PASS_TO_PASS split into successes and failures, as SWE-bench reports them."""

    __test__ = False
    fail_to_pass_success: list[str]
    fail_to_pass_failure: list[str]
    pass_to_pass_success: list[str]
    pass_to_pass_failure: list[str]

    @property
    def resolved(self) -> bool:
        """No FAIL_TO_PASS test still fails and no PASS_TO_PASS test broke."""
        return not self.fail_to_pass_failure and not self.pass_to_pass_failure


def verdict(
    statuses: dict[str, TestStatus], fail_to_pass: Iterable[str], pass_to_pass: Iterable[str]
) -> TestsReport:
    """Test statuses against the FAIL_TO_PASS and PASS_TO_PASS lists; a missing test counts as failing."""

    def split(tests: Iterable[str]) -> tuple[list[str], list[str]]:
        tests = list(tests)
        return [t for t in tests if statuses.get(t) in PASSING], [
            t for t in tests if statuses.get(t) not in PASSING
        ]

    f2p_ok, f2p_bad = split(fail_to_pass)
    p2p_ok, p2p_bad = split(pass_to_pass)
    return TestsReport(
        fail_to_pass_success=f2p_ok,
        fail_to_pass_failure=f2p_bad,
        pass_to_pass_success=p2p_ok,
        pass_to_pass_failure=p2p_bad,
    )
