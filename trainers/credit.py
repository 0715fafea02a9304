"""Credit assignment for SFT on unresolved episodes: label every assistant step, train on the productive part.

Orchard's exact credit-assignment procedure is unpublished; this module is our reading of it. A step is one
assistant message (its tool calls, or the action in its text under `react` / `bash-only`), and its
observations are the messages after it up to the next one. A scorer gives every step one label:

- good: moved the task on, or at least nothing says it went wrong;
- unnecessary: ran fine but changed nothing (the same action with the same result again, an empty command);
- mistake: went wrong; `critical` when it derails the episode, which is where the `prefix` policy cuts;
- recovery: a clean step right after a failed one, or a step that reverts an earlier bad edit.

`trained_steps` turns labels into the assistant messages that get loss; the others stay in the context.

`HeuristicScorer` reads only what the envs and harnesses print (see tests/test_credit.py for real samples):

- an errored action: SWE bash `[exit code N]` / `[timed out after ...]` or a traceback; `Error: ...` (an
  invalid call, an editor or Claw argument error); `Error 4xx: ...` from a Claw service; `Format error: ...`
  (a reply with no action). Not errors: exit 1 from grep/diff/test (an answer), a test run (judged by its
  counts instead), a traceback whose last line is the error the task statement reports (a reproduction),
  and Claw's `Error 429/5xx` and service timeouts (faults injected to test robustness: not the agent's doing,
  and retrying after one is not a repeat).
- a reverted edit: editor `undo_edit`, a `str_replace` swapped back, `git checkout/restore/stash/reset --hard`
  over an edited file; in Claw, an item created and then deleted or cancelled, a label added then removed.
- a worse test run: the same test command (pytest or unittest output) reports fewer passes, or more failures
  and no more passes, than its previous run; blamed on the first edit since that run.
- a repeated action: the same tool and arguments (or the same reply text) as an earlier step, with nothing
  written in between, so it could not have turned out differently. A Claw call that creates the same item
  again (a second identical email, event, order) is a duplicate: a mistake.

Critical means the agent did not get back on track, so later steps build on the mistake:

- failing again with the very action that just failed: it ignored the error message;
- the third identical action with the same result: a loop;
- a test regression never undone (no revert of the blamed edit, no later run back to the earlier counts);
- the first of `error_streak` (default 3) failed steps in a row: the agent is flailing;
- ending an unresolved episode (`submit` / `finish`): training on it teaches stopping with the work undone.

Not critical: one failed action followed by a different one (the agent read the error), a reverted edit (it
undid the edit itself), a regression later undone, a single identical repeat of a successful action.

`JudgeScorer` asks any agent endpoint for the labels instead; a step the judge leaves unlabelled or labels
invalidly gets the heuristic label, with a reason that says so. Reasons count steps from 1 ("step 3" is the
third assistant message), as the judge's transcript does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any, Literal, Protocol

from orchard_envs.agents.base import END_TOOLS, Agent, AssistantTurn, ContextOverflow
from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError, unknown_name
from orchard_envs.harnesses import HARNESSES, get_harness
from orchard_envs.harnesses.base import FormatError, Harness
from orchard_envs.registry import construct
from orchard_envs.tasks.claw.catalog import TOOLS as CLAW_TOOLS
from orchard_envs.tasks.swe.prepare import REPO_DIR
from orchard_envs.text import clip

StepLabelName = Literal["good", "unnecessary", "mistake", "recovery"]
LABELS: tuple[StepLabelName, ...] = ("good", "unnecessary", "mistake", "recovery")
POLICIES = ("prefix", "good")
SCORERS: dict[str, str] = {
    "heuristic": "orchard_envs.trainers.credit:HeuristicScorer",
    "judge": "orchard_envs.trainers.credit:JudgeScorer",
}


@dataclass(frozen=True)
class StepLabel:
    message_index: int  # index into episode.messages of an assistant message
    label: StepLabelName
    critical: bool  # a mistake that derails the episode (cut point for the prefix policy)
    reason: str  # one line, human readable

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label {self.label!r} is not one of {', '.join(LABELS)}")
        if self.critical and self.label != "mistake":
            raise ValueError(f"only a mistake can be critical, not a step labelled {self.label!r}")


class StepScorer(Protocol):
    name: str

    def score(self, episode: Episode) -> list[StepLabel]:
        """Exactly one label per assistant message, in order."""
        ...


def make_scorer(name: str, **options: Any) -> StepScorer:
    """A scorer by registry name ('heuristic', 'judge'); options go to its constructor."""
    return construct("scorer", SCORERS, name, **options)


def trained_steps(episode: Episode, labels: Sequence[StepLabel], policy: str = "prefix") -> list[int]:
    """Message indices of the assistant messages that get loss.

    Resolved episodes (metadata.resolved is True) train every step, whatever the labels (pass [] to skip
    scoring them). Otherwise `prefix` keeps the steps before the first critical label, and `good` keeps only
    the good and recovery steps among those.
    """
    if policy not in POLICIES:
        raise unknown_name("credit-assignment policy", policy, POLICIES)
    replies = [i for i, message in enumerate(episode.messages) if message.get("role") == "assistant"]
    if episode.metadata.resolved is True:
        return replies
    labelled = [label.message_index for label in labels]
    if labelled != replies:
        raise ValueError(
            f"the labels cover messages {labelled}, but the episode's assistant messages are {replies}: "
            "a scorer gives exactly one label per assistant message, in order"
        )
    kept: list[int] = []
    for label in labels:
        if label.critical:
            break
        if policy == "prefix" or label.label in ("good", "recovery"):
            kept.append(label.message_index)
    return kept


# --- steps: what each reply did and what came back --------------------------------------------------

FORMAT_ERROR = "Format error:"  # harnesses.base.Harness.format_error
NOT_RUN = "Not run: the episode had ended."  # runner.run_episode, for calls after the episode ended
_harnesses: dict[str, Harness] = {}


@dataclass
class _Call:
    name: str
    arguments: dict[str, Any]
    key: str  # the tool and its canonical arguments: what "the same action" means
    observation: str | None  # None: the env never ran it


@dataclass
class _Step:
    number: int  # 1-based, as reasons and the judge count steps
    index: int  # into episode.messages
    action: str  # the reply as the judge sees it: its text and its tool calls
    calls: list[_Call]
    format_error: str | None  # the harness's complaint when the reply held no action


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _unwrap(observation: str) -> str:
    """The env's output inside a text harness's observation message (`react` / `bash-only`)."""
    if observation.startswith("<tool_response>"):
        return observation.removeprefix("<tool_response>\n").removesuffix("\n</tool_response>")
    return observation.removeprefix("Output:\n")


def _parse(turn: AssistantTurn, harness: str) -> list[Any] | FormatError:
    """The calls a harness reads from the reply: the same parser that ran the episode."""
    names = [harness] if harness in HARNESSES else ["tool-calling", "react", "bash-only"]
    parsed: list[Any] | FormatError = FormatError("no action")
    for name in names:
        if name not in _harnesses:
            _harnesses[name] = get_harness(name)
        parsed = _harnesses[name].parse(turn)
        if not isinstance(parsed, FormatError):
            break
    return parsed


def _call(action: dict[str, Any], observation: str | None) -> _Call:
    name, raw = str(action.get("name")), action.get("arguments")
    if isinstance(raw, str):  # tool-calling: the model's JSON text, which the env parsed
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return _Call(name, {}, f"{name} {raw}", observation)
    arguments = raw if isinstance(raw, dict) else {}
    return _Call(name, arguments, f"{name} {json.dumps(raw, sort_keys=True, default=str)}", observation)


def _parse_steps(episode: Episode) -> list[_Step]:
    """One `_Step` per assistant message, whatever the harness."""
    messages = episode.messages
    replies = [i for i, message in enumerate(messages) if message.get("role") == "assistant"]
    steps: list[_Step] = []
    for number, index in enumerate(replies, 1):
        after = messages[index + 1 : replies[number] if number < len(replies) else len(messages)]
        by_id = {m.get("tool_call_id"): _text(m.get("content")) for m in after if m.get("role") == "tool"}
        said = [_text(m.get("content")) for m in after if m.get("role") == "user"]
        format_error = next((text for text in said if text.startswith(FORMAT_ERROR)), None)
        shown = [_unwrap(text) for text in said if not text.startswith(FORMAT_ERROR)]
        content, tool_calls = _text(messages[index].get("content")), messages[index].get("tool_calls") or []
        parsed = _parse(AssistantTurn(content=content, tool_calls=list(tool_calls)), episode.metadata.harness)
        calls: list[_Call] = []
        if isinstance(parsed, FormatError):
            format_error = format_error or f"{FORMAT_ERROR} {parsed.message}"
        elif format_error is None:  # text harnesses: one call, answered by the next user message
            for k, call in enumerate(parsed):
                observation = (
                    by_id.get(call.call_id) if call.call_id else (shown[k] if k < len(shown) else None)
                )
                calls.append(_call(call.action, None if observation == NOT_RUN else observation))
        rendered = [f"{c['function']['name']}({c['function']['arguments']})" for c in tool_calls]
        action = "\n".join(part for part in [content, *rendered] if part)
        steps.append(_Step(number, index, action, calls, format_error))
    return steps


# --- what one call's observation says ------------------------------------------------------------------

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
class _Tests:
    passed: int
    failed: int  # failures and errors

    def __str__(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"

    def worse_than(self, before: _Tests) -> bool:
        return self.passed < before.passed or (self.failed > before.failed and self.passed <= before.passed)


@dataclass
class _Outcome:
    failure: str | None = None  # why the call failed; None: it did not
    transient: bool = False  # a fault the service injected, not the agent's doing
    tests: _Tests | None = None  # the counts of a test run
    useless: str | None = None  # why it could not achieve anything
    note: str = ""  # why a call that looks like a failure is fine


def _one_line(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _test_counts(output: str) -> _Tests | None:
    """The last pytest or unittest summary in the output."""
    found: list[tuple[int, _Tests]] = []
    for match in PYTEST_SUMMARY.finditer(output):
        counts = {kind.rstrip("s"): int(n) for n, kind in PYTEST_COUNT.findall(match.group(1))}
        found.append(
            (match.start(), _Tests(counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0)))
        )
    for match in UNITTEST_SUMMARY.finditer(output):
        counts = {kind: int(n) for kind, n in UNITTEST_COUNT.findall(match.group(3))}
        bad = counts.get("failures", 0) + counts.get("errors", 0)
        found.append((match.start(), _Tests(int(match.group(1)) - bad - counts.get("skipped", 0), bad)))
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


def _bash_outcome(command: str, output: str, statement: str) -> _Outcome:
    if not command.strip():
        return _Outcome(useless="an empty command")
    tests = _test_counts(output)
    if tests is not None and (tests.passed or tests.failed):  # failing tests are information, not errors
        return _Outcome(tests=tests, note=f"tests: {tests}")
    shown = _one_line(command, 60)
    exit_code = EXIT_CODE.search(output)
    code = int(exit_code.group(1)) if exit_code else 0
    segments = _segments(_unquoted(command))
    if TIMED_OUT.search(output):
        return _Outcome(failure=f"`{shown}` timed out")
    if code == 1 and segments and _program(segments[-1]) in ANSWERS_WITH_EXIT_1:
        return _Outcome(note=f"`{shown}` found nothing")
    failure = f"exit code {code} from `{shown}`" if code else None
    if TRACEBACK in output:
        failure = failure or f"a traceback from `{shown}`"
    if failure and _reproduces(output, statement):
        return _Outcome(note="reproduces the reported error")
    return _Outcome(failure=failure)


def _outcome(call: _Call, statement: str) -> _Outcome:
    output = call.observation or ""
    command = call.arguments.get("command")
    if call.name == "bash" and isinstance(command, str):
        return _bash_outcome(command, output, statement)
    http = HTTP_ERROR.match(output)
    status = int(http.group(1)) if http else 0
    if SERVICE_TIMEOUT.match(output) or status == 429 or status >= 500:
        return _Outcome(
            transient=True, note=f"a service fault ({status or 'timeout'}), not the agent's doing"
        )
    if output.startswith("Error"):
        detail = re.search(r'"error":\s*"(.*)"', output) if status else None  # the JSON body's message
        message = _one_line(f"{status} {detail.group(1)}" if detail else output.removeprefix("Error: "))
        return _Outcome(failure=message if call.name in message else f"{call.name}: {message}")
    return _Outcome()


def _path(path: Any) -> str:
    text = str(path).strip("'\"").removeprefix(REPO_DIR + "/").removeprefix("./")
    return text.rstrip("/") or "."


def _reads_only(segment: str) -> bool:
    words, program = segment.split(), _program(segment)
    if program == "git":
        return len(words) > 1 and words[1] in GIT_READS
    if program.startswith("python"):  # a test run; any other script may write files
        return "pytest" in words or "unittest" in words
    return program in READ_ONLY and not ({"-delete", "-exec", "-execdir"} & set(words))


def _bash_written(command: str) -> list[str] | None:
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
        return [_path(p) for p in paths]
    return None if all(_reads_only(segment) for segment in _segments(body)) else []


def _git_reverted(command: str) -> list[str]:
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
            specs += [_path(w) for w in tail if not w.startswith("-") and not w.startswith("HEAD")]
    return specs


def _covers(spec: str, path: str | None) -> bool:
    """Whether git puts `path` back (None: files we could not name); files outside the repository stay."""
    if path is None or spec == ".":
        return spec == "." and (path is None or not path.startswith("/"))
    return path == spec or path.startswith(spec + "/")


def _changes(call: _Call, outcome: _Outcome) -> tuple[bool, bool]:
    """(may the call have changed the env's state, is it a file edit we can name): a repeat across a change is
    fair, and a test regression is blamed on an edit first."""
    if outcome.failure or outcome.transient or call.observation is None:
        return False, False
    if call.name == "str_replace_editor":
        edit = call.arguments.get("command") in EDITOR_WRITES
        return edit, edit
    if call.name == "bash":
        written = _bash_written(str(call.arguments.get("command", "")))
        return written is not None, bool(written)
    spec = CLAW_TOOLS.get(call.name)
    return spec is not None and spec.method not in (None, "GET"), False


# --- the heuristic scorer ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Finding:
    label: StepLabelName
    critical: bool
    reason: str

    @property
    def rank(self) -> int:
        """Which finding names the step: a critical mistake over a mistake over unnecessary over recovery."""
        return 4 if self.critical else {"mistake": 3, "unnecessary": 2, "recovery": 1, "good": 0}[self.label]


@dataclass(frozen=True)
class _Seen:
    pos: int
    failed: bool
    text: str  # the observation without what varies between identical runs (timings, line numbers)
    made: str | None = None  # the id of the Claw item it created
    run: int = 1  # how many times in a row this action gave this result with nothing written in between


def _made(call: _Call, outcome: _Outcome) -> str | None:
    """The id of the Claw item a successful POST created (the service answers with the new item)."""
    spec = CLAW_TOOLS.get(call.name)
    if spec is None or spec.method != "POST" or outcome.failure or outcome.transient or not call.observation:
        return None
    try:
        made = json.loads(call.observation)
    except json.JSONDecodeError:
        return None
    return made["id"] if isinstance(made, dict) and isinstance(made.get("id"), str) else None


def _normal(text: str | None) -> str:
    text = text or ""
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text.strip()


def _test_key(command: str) -> str:
    """A test command without what does not change which tests run (cd, 2>&1, | tail)."""
    key = re.sub(r"^cd \S+ && ", "", " ".join(command.split()))
    return re.sub(r"\s*\|\s*(tail|head)\b.*$", "", key.replace(" 2>&1", ""))


class _Scoring:
    """One episode under the heuristic: its steps, each call's outcome, and what was found about each step."""

    def __init__(self, episode: Episode) -> None:
        self.episode = episode
        self.steps = _parse_steps(episode)
        statement = next((_text(m.get("content")) for m in episode.messages if m.get("role") == "user"), "")
        self.outcomes = [[_outcome(call, statement) for call in step.calls] for step in self.steps]
        self.failed = [
            step.format_error is not None or any(o.failure for o in outcomes)
            for step, outcomes in zip(self.steps, self.outcomes, strict=True)
        ]
        changes = [
            [_changes(call, o) for call, o in zip(step.calls, outcomes, strict=True)]
            for step, outcomes in zip(self.steps, self.outcomes, strict=True)
        ]
        self.wrote = [any(wrote for wrote, _ in step) for step in changes]
        self.edited = [any(edited for _, edited in step) for step in changes]
        self.writes_before = [0, *accumulate(self.wrote)]  # writing steps before each step
        self.found: list[list[_Finding]] = [[] for _ in self.steps]

    def add(self, pos: int, label: StepLabelName, reason: str, critical: bool = False) -> None:
        self.found[pos].append(_Finding(label, critical, reason))

    def number(self, pos: int) -> int:
        return self.steps[pos].number

    def items(self, pos: int) -> list[tuple[str, _Outcome, _Seen]]:
        """What the step did: (action key, outcome, record) per call; a reply with no action is keyed
        by its text."""
        step = self.steps[pos]
        if step.format_error is not None:
            why = _one_line(
                f"no action in the reply ({step.format_error.removeprefix(FORMAT_ERROR).strip()})"
            )
            seen = _Seen(pos, True, _normal(step.format_error))
            return [(f"reply {step.action.strip()}", _Outcome(failure=why), seen)]
        return [
            (
                call.key,
                outcome,
                _Seen(pos, bool(outcome.failure), _normal(call.observation), _made(call, outcome)),
            )
            for call, outcome in zip(step.calls, self.outcomes[pos], strict=True)
            if call.observation is not None
        ]

    def errors_and_repeats(self) -> None:
        """Failed calls are mistakes; a call is also judged against the last time the same action ran."""
        last_seen: dict[str, _Seen] = {}
        for pos in range(len(self.steps)):
            items = self.items(pos)
            useless: list[str] = []
            for key, outcome, seen in items:
                if outcome.failure:
                    self.add(pos, "mistake", outcome.failure)
                elif outcome.note:
                    self.add(pos, "good", outcome.note)
                why = outcome.useless
                if key in last_seen:
                    seen, why = self.repeat(last_seen[key], seen)
                if why:
                    useless.append(why)
                if not outcome.transient:  # a retry after an injected fault is not a repeat
                    last_seen[key] = seen
            if items and len(useless) == len(items):
                self.add(pos, "unnecessary", useless[0])

    def repeat(self, last: _Seen, seen: _Seen) -> tuple[_Seen, str | None]:
        """Judge an action that ran before: returns its record and, when it achieved nothing new, why."""
        pos, step = seen.pos, self.number(last.pos)
        if seen.made and last.made and seen.made != last.made:
            self.add(pos, "mistake", f"makes again what step {step} made (a duplicate)")
            return seen, None
        if self.writes_before[pos] != self.writes_before[last.pos + 1]:
            return seen, None  # something was written in between: running it again is fair
        if seen.failed and last.failed:
            self.add(pos, "mistake", f"repeats the failed step {step}", critical=True)
        elif not seen.failed and not last.failed and seen.text == last.text:
            seen = replace(seen, run=last.run + 1)
            if seen.run >= 3:
                self.add(
                    pos, "mistake", f"repeats step {step} again with the same result: a loop", critical=True
                )
            return seen, f"repeats step {step} with the same result"
        return seen, None

    def reverts(self) -> set[int]:
        """Mark edits undone later (mistakes) and the steps that undid them (recoveries)."""
        reverted: set[int] = set()
        live: list[tuple[int, str | None]] = []  # edits not undone yet: (step, file; None: files unknown)
        editor: dict[str, list[tuple[int, dict[str, Any]]]] = {}  # the editor's own undo history per file
        created: dict[str, int] = {}  # Claw item id -> the step that created it
        labelled: dict[tuple[str, str], int] = {}  # (Claw message id, label) -> the step that added it

        def revert(pos: int, victims: list[int], what: str) -> None:
            for victim in sorted(set(victims) - reverted):
                reverted.add(victim)
                self.add(victim, "mistake", f"{what} was undone at step {self.number(pos)}")
                self.add(pos, "recovery", f"undoes step {self.number(victim)}")

        for pos, step in enumerate(self.steps):
            for call, outcome in zip(step.calls, self.outcomes[pos], strict=True):
                if outcome.failure or outcome.transient or call.observation is None:
                    continue
                args = call.arguments
                if call.name == "str_replace_editor" and args.get("command") in EDITOR_WRITES:
                    path = _path(args.get("path", ""))
                    history = editor.setdefault(path, [])
                    if args["command"] == "undo_edit":
                        undone = [history.pop()[0]] if history else []
                    else:  # a str_replace that swaps an earlier one back undoes it
                        swap = (args.get("new_str"), args.get("old_str"))
                        undone = [
                            p
                            for p, a in history
                            if args["command"] == a.get("command") == "str_replace"
                            and (a.get("old_str"), a.get("new_str")) == swap
                        ]
                        history.append((pos, args))
                        live += [] if undone else [(pos, path)]
                    live = [(p, f) for p, f in live if p not in undone]
                    revert(pos, undone, f"its edit of {path}")
                elif call.name == "bash":
                    command = str(args.get("command", ""))
                    specs = _git_reverted(command)
                    if specs:
                        undone = [p for p, f in live if any(_covers(s, f) for s in specs)]
                        live = [(p, f) for p, f in live if p not in undone]
                        for path in list(editor):
                            if any(_covers(s, path) for s in specs):
                                del editor[path]
                        revert(pos, undone, "its change")
                    elif (written := _bash_written(command)) is not None:
                        live += [(pos, path) for path in written or [None]]
                elif call.name.endswith(("_delete", "_cancel")) and args.get("id") in created:
                    revert(pos, [created.pop(args["id"])], f"the item {args['id']} it made")
                elif call.name == "mail_label":
                    for label in args.get("remove") or []:
                        if (key := (str(args.get("id")), str(label))) in labelled:
                            revert(pos, [labelled.pop(key)], f"the label {label!r} it added")
                    labelled.update(
                        ((str(args.get("id")), str(label)), pos) for label in args.get("add") or []
                    )
                elif made := _made(call, outcome):
                    created[made] = pos
        return reverted

    def regressions(self, reverted: set[int]) -> None:
        """A test command that got worse: the first edit since its last run is a mistake, critical unless the
        edit was reverted or a later run got back to the earlier counts."""
        runs: dict[str, list[tuple[int, _Tests]]] = {}
        worse: list[tuple[str, int, _Tests, int, _Tests]] = []
        for pos, step in enumerate(self.steps):
            for call, outcome in zip(step.calls, self.outcomes[pos], strict=True):
                if outcome.tests is None:
                    continue
                key = _test_key(str(call.arguments.get("command", "")))
                history = runs.setdefault(key, [])
                if history and outcome.tests.worse_than(history[-1][1]):
                    worse.append((key, *history[-1], pos, outcome.tests))
                history.append((pos, outcome.tests))
        for key, before_pos, before, pos, now in worse:
            # the first named edit since that run, else the first step that may have written, else the first
            blamed = min(
                range(before_pos + 1, pos + 1), key=lambda p: (not self.edited[p], not self.wrote[p], p)
            )
            undone = blamed in reverted or any(
                p > pos and t.passed >= before.passed and t.failed <= before.failed for p, t in runs[key]
            )
            why = f"`{_one_line(key, 60)}` got worse by step {self.number(pos)} ({before} -> {now})"
            self.add(blamed, "mistake", why + (", undone later" if undone else ""), critical=not undone)

    def streaks(self, length: int) -> None:
        run = 0
        for pos, failed in enumerate(self.failed):
            run = run + 1 if failed else 0
            if run == length:
                first = pos - length + 1
                why = next((f.reason for f in self.found[first] if f.label == "mistake"), "failed")
                self.add(first, "mistake", f"{why}; starts {length} failed steps in a row", critical=True)

    def ending(self) -> None:
        meta = self.episode.metadata
        if meta.resolved is True or meta.status != "submitted":
            return
        for pos in reversed(range(len(self.steps))):
            if any(c.name in END_TOOLS and c.observation is not None for c in self.steps[pos].calls):
                self.add(
                    pos, "mistake", f"ended the episode unresolved (reward {meta.reward:g})", critical=True
                )
                return

    def labels(self) -> list[StepLabel]:
        labels: list[StepLabel] = []
        for pos, step in enumerate(self.steps):
            best = max(self.found[pos], key=lambda finding: finding.rank, default=None)
            ran = any(call.observation is not None for call in step.calls)
            clean = ran and not any(o.transient for o in self.outcomes[pos])
            if (best is None or best.rank == 0) and pos and self.failed[pos - 1] and clean:
                best = _Finding("recovery", False, f"succeeds after the failed step {self.number(pos - 1)}")
            if best is None:
                best = _Finding(
                    "good", False, "no sign of trouble" if ran else "never ran: the episode ended"
                )
            labels.append(StepLabel(step.index, best.label, best.critical, best.reason))
        return labels


class HeuristicScorer:
    """Labels steps from env signals only (errors, reverts, test counts, repeats): no model, milliseconds."""

    name = "heuristic"

    def __init__(self, *, error_streak: int = 3) -> None:
        if error_streak < 2:
            raise ConfigError(
                f"error_streak must be at least 2 (one failed step is never critical), not {error_streak}"
            )
        self.error_streak = error_streak

    def score(self, episode: Episode) -> list[StepLabel]:
        scoring = _Scoring(episode)
        scoring.errors_and_repeats()
        scoring.regressions(scoring.reverts())
        scoring.streaks(self.error_streak)
        scoring.ending()
        return scoring.labels()


# --- the judge scorer ------------------------------------------------------------------------------------

JUDGE_SYSTEM = """\
You review an AI agent's attempt at a task, step by step, and label every numbered step you are asked about:

- good: moves the task forward
- unnecessary: harmless but useless (a repeat, a detour)
- mistake: wrong or harmful (an error, a bad edit, ignoring what an observation said); set "critical": true \
when it derails the attempt, so that the steps after it build on it
- recovery: fixes or works around an earlier mistake

Answer with one JSON object per line, one line per step, and nothing else:
{"step": 3, "label": "mistake", "critical": true, "reason": "one short sentence"}"""
VERDICT = re.compile(r"\{[^{}]*\}")


class JudgeScorer:
    """Asks an agent (any endpoint: `openai`, `vllm`, `hf`) to label the steps, `window` steps per request.

    Each request shows the task, the outcome, the earlier actions in one line each, and the window's steps
    with clipped observations. Replies are parsed leniently (prose and code fences around the JSON lines are
    fine); a step the judge does not label validly gets `fallback`'s label, with a reason that says so. An
    endpoint that fails (unreachable, bad key) raises rather than quietly turning every label heuristic.
    """

    name = "judge"

    def __init__(
        self,
        agent: Agent,
        *,
        window: int = 10,
        observation_chars: int = 1_000,
        task_chars: int = 3_000,
        fallback: StepScorer | None = None,
    ) -> None:
        if window < 1:
            raise ConfigError(f"window must be at least 1 step, not {window}")
        self.agent, self.window = agent, window
        self.observation_chars, self.task_chars = observation_chars, task_chars
        self.fallback = fallback or HeuristicScorer()

    def score(self, episode: Episode) -> list[StepLabel]:
        steps = _parse_steps(episode)
        judged: dict[int, StepLabel] = {}
        problems: dict[int, str] = {}
        for start in range(0, len(steps), self.window):
            window = steps[start : start + self.window]
            try:  # a fresh clone per request: no conversation state carries over between requests
                reply = self.agent.clone().act(self.prompt(episode, steps, window), []).content or ""
            except ContextOverflow:
                problems.update(
                    (step.number, "the request did not fit its context window") for step in window
                )
                continue
            found, invalid = _verdicts(reply, {step.number: step.index for step in window})
            judged.update(found)
            problems.update(invalid)
        labels: list[StepLabel] = []
        for step, backup in zip(steps, self.fallback.score(episode), strict=True):
            if step.number in judged:
                labels.append(judged[step.number])
                continue
            why = problems.get(step.number, "no label for this step")
            reason = _one_line(f"judge: {why}; heuristic: {backup.reason}", 200)
            labels.append(StepLabel(backup.message_index, backup.label, backup.critical, reason))
        return labels

    def prompt(self, episode: Episode, steps: list[_Step], window: list[_Step]) -> list[dict[str, Any]]:
        meta = episode.metadata
        task = next((_text(m.get("content")) for m in episode.messages if m.get("role") == "user"), "")
        outcome = "resolved" if meta.resolved else "not resolved"
        parts = [
            f"Task:\n{clip(task, self.task_chars)}",
            f"Outcome: {outcome} (status {meta.status}, reward {meta.reward:g})",
        ]
        earlier = steps[: window[0].number - 1]
        if earlier:
            parts.append(
                "Earlier steps:\n" + "\n".join(f"{s.number}. {_one_line(s.action, 160)}" for s in earlier)
            )
        for step in window:
            results = (
                [step.format_error]
                if step.format_error
                else [c.observation or "[not run]" for c in step.calls]
            )
            result = clip("\n".join(results), self.observation_chars)
            parts.append(f"### Step {step.number}\nAction:\n{clip(step.action, 2_000)}\nResult:\n{result}")
        first, last = window[0].number, window[-1].number
        parts.append(f"Label steps {first} to {last}: one JSON line per step.")
        return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def _verdicts(reply: str, numbers: dict[int, int]) -> tuple[dict[int, StepLabel], dict[int, str]]:
    """The judge's labels by step number (for the steps in `numbers`: step number -> message index), and why
    the steps it mentioned but labelled invalidly were rejected. The first valid label of a step wins."""
    labels: dict[int, StepLabel] = {}
    problems: dict[int, str] = {}
    for match in VERDICT.finditer(reply):
        try:
            item = json.loads(match.group())
        except json.JSONDecodeError:
            continue
        raw = item.get("step")
        step = int(raw) if isinstance(raw, int | str) and str(raw).strip().isdigit() else None
        if step not in numbers or step in labels:
            continue
        label = str(item.get("label", "")).strip().lower()
        if label not in LABELS:
            problems.setdefault(step, f"label {item.get('label')!r} is not one of {', '.join(LABELS)}")
            continue
        critical = label == "mistake" and str(item.get("critical")).strip().lower() in ("true", "1", "yes")
        reason = _one_line(f"judge: {item.get('reason') or label}", 200)
        labels[step] = StepLabel(numbers[step], label, critical, reason)  # type: ignore[arg-type]
    return labels, problems
