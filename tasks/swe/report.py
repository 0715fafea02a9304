"""Test outcomes from pytest's JUnit XML report, and the SWE-bench verdict over them.

Outcomes come from a report file, never from parsing the log, which the code under test can print
anything into. The verdict follows SWE-bench's semantics (`swebench.harness.grading`): a test counts as
passing only if it PASSED or XFAILed, and a missing or skipped test is a failure.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from enum import StrEnum

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
    """The report is missing, empty or not JUnit XML: an infrastructure fault, never a pass."""


def node_id(case: ET.Element) -> str:
    """Rebuild pytest's node id from an xunit1 `testcase` (file + classes + name)."""
    file, classname, name = case.get("file"), case.get("classname", ""), case.get("name", "")
    if not file:
        raise ReportError("testcase without a 'file' attribute: run pytest with -o junit_family=xunit1")
    module = file.removesuffix(".py").replace("/", ".")
    classes = classname[len(module) :].lstrip(".") if classname.startswith(module) else ""
    return "::".join([file, *filter(None, classes.split(".")), name])


def case_status(case: ET.Element) -> TestStatus:
    status = TestStatus.PASSED
    for child in case:
        if child.tag == "failure":
            found = TestStatus.FAILED
        elif child.tag == "error":
            found = TestStatus.ERROR
        elif child.tag == "skipped":
            found = TestStatus.XFAIL if child.get("type") == "pytest.xfail" else TestStatus.SKIPPED
        else:
            continue
        status = max(status, found, key=_SEVERITY.index)
    return status


def parse_junit(xml: bytes | str) -> tuple[dict[str, TestStatus], dict[str, str]]:
    """Map node id -> status, and node id -> failure message (the one-line summary pytest records)."""
    if not xml or not str(xml if isinstance(xml, str) else xml.decode(errors="replace")).strip():
        raise ReportError("the test report is empty")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ReportError(f"the test report is not XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ReportError(f"the test report's root is <{root.tag}>, not a JUnit <testsuites>")
    statuses: dict[str, TestStatus] = {}
    messages: dict[str, str] = {}
    for case in root.iter("testcase"):
        nid, status = node_id(case), case_status(case)
        if nid in statuses:  # a teardown error is recorded as a second entry for the same test
            status = max(statuses[nid], status, key=_SEVERITY.index)
        statuses[nid] = status
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failure is not None:
            messages[nid] = (failure.get("message") or "").strip()
    return statuses, messages


class TestsReport(BaseModel):
    """FAIL_TO_PASS and PASS_TO_PASS split into successes and failures, as SWE-bench reports them."""

    __test__ = False
    fail_to_pass_success: list[str]
    fail_to_pass_failure: list[str]
    pass_to_pass_success: list[str]
    pass_to_pass_failure: list[str]

    @property
    def resolved(self) -> bool:
        return not self.fail_to_pass_failure and not self.pass_to_pass_failure


def verdict(
    statuses: dict[str, TestStatus], fail_to_pass: Iterable[str], pass_to_pass: Iterable[str]
) -> TestsReport:
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
