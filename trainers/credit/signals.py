"""What one call says, read from its command and from what the envs and harnesses print (see
tests/test_credit.py for real samples): did it fail, did it run tests, what did it write or put back.

An errored action: SWE bash `[exit code N]` / `[timed out after ...]` or a traceback; `Error: ...` (an invalid
call, an editor or Claw argument error); `Error 4xx: ...` from a Claw service; `Format error: ...` (a reply
with no action, see `steps`). Not errors: exit 1 from grep/diff/test (an answer), a test run (judged by its
counts instead), a traceback whose last line is the error the task statement reports (a reproduction), and
Claw's `Error 429/5xx` and service timeouts (faults injected to test robustness: not the agent's doing, and
retrying after one is not a repeat).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from orchard_envs.tasks.claw.catalog import TOOLS as CLAW_TOOLS
from orchard_envs.tasks.swe.prepare import REPO_DIR
from orchard_envs.trainers.credit.labels import one_line
from orchard_envs.trainers.credit.steps import Call

EXIT_CODE = re.compile(r"\[exit code (-?\d+)\]\s*$")  # SWE bash, after the output
TIMED_OUT = re.compile(r"\[timed out after [\d.]+ s\]")
HTTP_ERROR = re.compile(r"^Error (\d{3}):")  # a Claw service's error answer
SERVICE_TIMEOUT = re.compile(r"^Error: the \w+ service did not answer")
TRACEBACK = "Traceback (most recent call last):"
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Exit|Interrupt)):[ \t]*(\S.*)$", re.M)
PYTEST_SUMMARY = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+|no tests ran) in [\d.]+s\b", re.M)
PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")
UNITTEST_SUMMARY = re.compile(r"^Ran (\d+) tests? in [\d.]+s\s*\n+(OK|FAILED)\b(.*)$", re.M)
UNITTEST_COUNT = re.compile(r"(failures|errors|skipped)=(\d+)")
ANSWERS_WITH_EXIT_1 = {"grep", "egrep", "fgrep", "rg", "diff", "cmp", "test", "[", "[["}
READ_ONLY = {  # programs that only read (sed without -i; redirections are looked for separately)
    "ls", "cat", "head", "tail", "grep", "egrep", "fgrep", "rg", "find", "wc", "nl", "pwd", "echo", "printf",
    "which", "type", "file", "stat", "tree", "du", "diff", "cmp", "sort", "uniq", "cut", "awk", "sed", "true",
    "test", "[", "[[", "cd", "env", "pytest",
}  # fmt: skip
GIT_READS = {"diff", "log", "show", "status", "grep", "blame", "ls-files"}
EDITOR_WRITES = {"create", "str_replace", "insert", "undo_edit"}
VOLATILE = [
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "Ns"),
    (re.compile(r"\bline \d+\b"), "line N"),
    (re.compile(r"0x[0-9a-f]+"), "0x"),
]


@dataclass(frozen=True)
class Counts:
    """A test run's counts."""

    passed: int
    failed: int  # failures and errors

    def __str__(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"

    def worse_than(self, before: Counts) -> bool:
        """Whether a test run regressed against `before`: fewer passed, or more failed and none gained."""
        return self.passed < before.passed or (self.failed > before.failed and self.passed <= before.passed)


@dataclass
class Outcome:
    """What a tool call achieved, as read from its observation."""

    failure: str | None = None  # why the call failed; None: it did not
    transient: bool = False  # a fault the service injected, not the agent's doing
    tests: Counts | None = None  # the counts of a test run
    useless: str | None = None  # why it could not achieve anything
    note: str = ""  # why a call that looks like a failure is fine


def took_effect(call: Call, outcome: Outcome) -> bool:
    """The env ran the call and it neither failed nor hit an injected fault."""
    return not (outcome.failure or outcome.transient or call.observation is None)


def _test_counts(output: str) -> Counts | None:
    """The last pytest or unittest summary in the output."""
    found: list[tuple[int, Counts]] = []
    for match in PYTEST_SUMMARY.finditer(output):
        counts = {kind.rstrip("s"): int(n) for n, kind in PYTEST_COUNT.findall(match.group(1))}
        found.append(
            (match.start(), Counts(counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0)))
        )
    for match in UNITTEST_SUMMARY.finditer(output):
        counts = {kind: int(n) for kind, n in UNITTEST_COUNT.findall(match.group(3))}
        bad = counts.get("failures", 0) + counts.get("errors", 0)
        found.append((match.start(), Counts(int(match.group(1)) - bad - counts.get("skipped", 0), bad)))
    return max(found, key=lambda item: item[0])[1] if found else None


def _strip_heredocs(command: str) -> str:
    """The command without here-document bodies (file contents, patches), which are not shell syntax."""
    return re.sub(
        r"(<<-?\s*(['\"]?)(\w+)\2)([^\n]*)\n.*?\n[ \t]*\3[ \t]*(?=\n|$)", r"\1\4", command, flags=re.S
    )


def _unquoted(command: str) -> str:
    return re.sub(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"", "''", _strip_heredocs(command))


def _segments(command: str) -> list[str]:
    return [part.strip() for part in re.split(r"\|\||&&|[;|\n]", command) if part.strip()]


def _program(segment: str) -> str:
    words = [word for word in segment.split() if not re.match(r"^\w+=", word)]
    return os.path.basename(words[0]) if words else ""


def _reproduces(output: str, statement: str) -> bool:
    """The output ends in the very error the task statement reports: the agent reproduced the bug."""
    found = EXCEPTION_LINE.findall(output)
    return bool(found) and f"{found[-1][0]}: {found[-1][1].strip()[:40]}" in statement


def _bash_outcome(command: str, output: str, statement: str) -> Outcome:
    if not command.strip():
        return Outcome(useless="an empty command")
    tests = _test_counts(output)
    if tests is not None and (tests.passed or tests.failed):  # failing tests are information, not errors
        return Outcome(tests=tests, note=f"tests: {tests}")
    shown = one_line(command, 60)
    exit_code = EXIT_CODE.search(output)
    code = int(exit_code.group(1)) if exit_code else 0
    segments = _segments(_unquoted(command))
    if TIMED_OUT.search(output):
        return Outcome(failure=f"`{shown}` timed out")
    if code == 1 and segments and _program(segments[-1]) in ANSWERS_WITH_EXIT_1:
        return Outcome(note=f"`{shown}` found nothing")
    failure = f"exit code {code} from `{shown}`" if code else None
    if TRACEBACK in output:
        failure = failure or f"a traceback from `{shown}`"
    if failure and _reproduces(output, statement):
        return Outcome(note="reproduces the reported error")
    return Outcome(failure=failure)


def outcome_of(call: Call, statement: str) -> Outcome:
    """How the call went, given the task statement (a reproduced error from it is not a failure)."""
    output = call.observation or ""
    command = call.arguments.get("command")
    if call.name == "bash" and isinstance(command, str):
        return _bash_outcome(command, output, statement)
    http = HTTP_ERROR.match(output)
    status = int(http.group(1)) if http else 0
    if SERVICE_TIMEOUT.match(output) or status == 429 or status >= 500:
        return Outcome(transient=True, note=f"a service fault ({status or 'timeout'}), not the agent's doing")
    if output.startswith("Error"):
        detail = re.search(r'"error":\s*"(.*)"', output) if status else None  # the JSON body's message
        message = one_line(f"{status} {detail.group(1)}" if detail else output.removeprefix("Error: "))
        return Outcome(failure=message if call.name in message else f"{call.name}: {message}")
    return Outcome()


def repo_path(path: Any) -> str:
    """A file path as the agent named it, relative to the repository where it lies inside it."""
    text = str(path).strip("'\"").removeprefix(REPO_DIR + "/").removeprefix("./")
    return text.rstrip("/") or "."


def _reads_only(segment: str) -> bool:
    words, program = segment.split(), _program(segment)
    if program == "git":
        return len(words) > 1 and words[1] in GIT_READS
    if program.startswith("python"):  # a test run; any other script may write files
        return "pytest" in words or "unittest" in words
    return program in READ_ONLY and not ({"-delete", "-exec", "-execdir"} & set(words))


def bash_written(command: str) -> list[str] | None:
    """Files a shell command writes (`>`, `tee`, `sed -i`, a patch's targets); [] when it may change files it
    does not name (a script, `mv`, `git apply`, ...); None when every part of it only reads."""
    body = _unquoted(command)
    paths = [p for p in re.findall(r"(?<![\d&<>])>>?\s*([^\s;&|<>()]+)", body) if not p.startswith("/dev/")]
    for segment in _segments(body):
        words, program = segment.split(), _program(segment)
        if program == "sed" and any(w.startswith("-i") or w == "--in-place" for w in words):
            paths.append(words[-1])
        elif program == "tee":
            paths += [w for w in words[1:] if not w.startswith("-")]
    paths += re.findall(r"^\+\+\+ b/(\S+)", command, re.M)
    if paths:
        return [repo_path(p) for p in paths]
    return None if all(_reads_only(segment) for segment in _segments(body)) else []


def git_reverted(command: str) -> list[str]:
    """Paths a git command puts back to their committed content ('.': all of them)."""
    specs: list[str] = []
    for verb, rest in re.findall(
        r"\bgit\s+(checkout|restore|stash|reset)\b([^;&|\n]*)", _strip_heredocs(command)
    ):
        words = rest.split()
        stash = verb == "stash" and (not words or words[0] in ("push", "save") or words[0].startswith("-"))
        if stash or (verb == "reset" and "--hard" in words):
            specs.append(".")
        elif verb in ("checkout", "restore") and "--staged" not in words:
            tail = words[words.index("--") + 1 :] if "--" in words else words
            specs += [repo_path(w) for w in tail if not w.startswith("-") and not w.startswith("HEAD")]
    return specs


def covers(spec: str, path: str | None) -> bool:
    """Whether git puts `path` back (None: files we could not name); files outside the repository stay."""
    if path is None or spec == ".":
        return spec == "." and (path is None or not path.startswith("/"))
    return path == spec or path.startswith(spec + "/")


def effects(call: Call, outcome: Outcome) -> tuple[bool, bool]:
    """(may the call have changed the env's state, is it a file edit we can name): a repeat across a change is
    fair, and a test regression is blamed on an edit first."""
    if not took_effect(call, outcome):
        return False, False
    if call.name == "str_replace_editor":
        edit = call.arguments.get("command") in EDITOR_WRITES
        return edit, edit
    if call.name == "bash":
        written = bash_written(str(call.arguments.get("command", "")))
        return written is not None, bool(written)
    spec = CLAW_TOOLS.get(call.name)
    return spec is not None and spec.method not in (None, "GET"), False


def created_id(call: Call, outcome: Outcome) -> str | None:
    """The id of the Claw item a successful POST created (the service answers with the new item)."""
    spec = CLAW_TOOLS.get(call.name)
    if spec is None or spec.method != "POST" or not took_effect(call, outcome) or not call.observation:
        return None
    try:
        item = json.loads(call.observation)
    except json.JSONDecodeError:
        return None
    return item["id"] if isinstance(item, dict) and isinstance(item.get("id"), str) else None


def normal(text: str | None) -> str:
    """An observation without what varies between identical runs (timings, line numbers, addresses)."""
    text = text or ""
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text.strip()


def command_key(command: str) -> str:
    """A test command without what does not change which tests run (cd, 2>&1, | tail)."""
    key = re.sub(r"^cd \S+ && ", "", " ".join(command.split()))
    return re.sub(r"\s*\|\s*(tail|head)\b.*$", "", key.replace(" 2>&1", ""))
