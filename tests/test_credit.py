"""Credit assignment: step labels from the envs' real signals under every harness, the trained-step policies,
and the judge scorer's parsing and fallback.

Hand-built episodes are rendered through the real harnesses (`encode`, `observation`, `format_error`), with
observations in the exact formats the envs print (copied from real runs); the real-run tests drive the SWE
and Claw envs themselves.
"""

from __future__ import annotations

import json
import re
from typing import Any

import gymnasium as gym
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchard_envs.agents.base import Agent, AssistantTurn, ContextOverflow, EpisodeContext
from orchard_envs.envs.tools import function_tool
from orchard_envs.episodes import Episode, EpisodeMetadata
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.harnesses.base import FormatError
from orchard_envs.runner import run_episode
from orchard_envs.trainers.credit import (
    LABELS,
    SCORERS,
    HeuristicScorer,
    JudgeScorer,
    StepLabel,
    make_scorer,
    trained_steps,
)

SWE, CLAW = "orchard/SWE-v0", "orchard/Claw-v0"
HARNESSES = ["tool-calling", "react", "bash-only"]
INVERTED = "isodate-0.7.2__invert_condition__42f22162"  # a swe-mini task: `if not (start is not None):`
STATEMENT = (
    "<problem_statement>\n- `tests/test_duration.py::test_totimedelta` fails with: TypeError: unsupported "
    "operand type(s) for -: 'NoneType' and 'Duration'\n</problem_statement>"
)

# Observations as the envs print them (envs/swe.py appends the exit code; envs/claw.py prefixes errors).
PYTEST_1_FAILED = (
    "........F.....\n=========================== short test summary info ============================\n"
    "FAILED tests/test_duration.py::test_totimedelta - TypeError: unsupported oper...\n"
    "1 failed, 132 passed in 0.10s\n\n[exit code 1]"
)
PYTEST_PASSED = "..............\n133 passed in 0.09s"
RULE = "=" * 27
PYTEST_COLLECTION_ERROR = (
    f"E   SyntaxError: expected ':'\n{RULE} short test summary info {RULE}\nERROR tests/test_duration.py\n"
    f"{'!' * 20} Interrupted: 1 error during collection {'!' * 20}\n1 error in 0.11s\n\n[exit code 2]"
)
UNITTEST_FAILED = f"\n{'-' * 70}\nRan 4 tests in 0.000s\n\nFAILED (errors=1)\n"
REPRODUCED = (
    'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
    "TypeError: unsupported operand type(s) for -: 'NoneType' and 'Duration'\n\n[exit code 1]"
)
OTHER_TRACEBACK = (
    'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
    "ValueError: start or end required\n\n[exit code 1]"
)
NOT_FOUND = "bash: line 11: pytset: command not found\n\n[exit code 127]"
NOT_FOUND_AGAIN = "bash: line 14: pytset: command not found\n\n[exit code 127]"
SUBMITTED = "Submitted. Grading: unresolved. 1 required test(s) did not pass: tests/test_duration.py::test_x"
RATE_LIMITED = 'Error 429: {\n "error": "rate limited, retry later"\n}'
MISSING = 'Error 404: {\n "error": "no message with id \'m999\'"\n}'
INBOX = '[\n {\n  "id": "m8",\n  "subject": "Harbor Analytics: your booking 9426 is confirmed"\n }\n]'
FINISHED = "Your reply was sent to the user."


def bash(command: str) -> dict[str, Any]:
    return {"name": "bash", "arguments": {"command": command}}


def editor(command: str, path: str, **arguments: Any) -> dict[str, Any]:
    return {"name": "str_replace_editor", "arguments": {"command": command, "path": path, **arguments}}


def tool(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


SUBMIT = tool("submit")
FINISH = tool("finish", answer="done")
SWE_TOOLS = ["bash", "str_replace_editor", "submit"]
CLAW_TOOLS = ["mail_search", "mail_read", "mail_label", "mail_send", "docs_create", "docs_delete", "finish"]

Step = tuple[dict[str, Any] | list[dict[str, Any]] | str, str | list[str]]


def episode(
    harness: str,
    steps: list[Step],
    *,
    env: str = SWE,
    resolved: bool | None = False,
    status: str = "submitted",
    reward: float = 0.0,
) -> Episode:
    """(action, observation) pairs rendered through the real harness, as the runner records them. An action
    given as text is a reply with no action (a format error); a list of actions is one tool-calling reply."""
    rendering = get_harness(harness)
    names = SWE_TOOLS if env == SWE else CLAW_TOOLS
    messages, _ = rendering.start(STATEMENT, [function_tool(name, "", {}, []) for name in names])
    for action, observation in steps:
        if isinstance(action, str):
            turn = AssistantTurn(content=action)
            parsed = rendering.parse(turn)
            assert isinstance(parsed, FormatError)
            messages += [turn.message(), rendering.format_error(parsed)]
            continue
        turns = [rendering.encode(a) for a in (action if isinstance(action, list) else [action])]
        turn = AssistantTurn(content=turns[0].content, tool_calls=[c for t in turns for c in t.tool_calls])
        calls = rendering.parse(turn)
        assert not isinstance(calls, FormatError)
        texts = observation if isinstance(observation, list) else [observation]
        messages += [
            turn.message(),
            *(rendering.observation(c, t) for c, t in zip(calls, texts, strict=True)),
        ]
    metadata = EpisodeMetadata(
        env_id=env,
        suite="test",
        task_id="t",
        harness=harness,
        agent="test",
        reward=reward,
        resolved=resolved,
        status=status,  # type: ignore[arg-type]
    )
    return Episode(messages=messages, metadata=metadata)


def labels_of(ep: Episode) -> list[StepLabel]:
    labels = HeuristicScorer().score(ep)
    assert [label.message_index for label in labels] == replies(ep)
    return labels


def replies(ep: Episode) -> list[int]:
    return [i for i, message in enumerate(ep.messages) if message["role"] == "assistant"]


def kinds(labels: list[StepLabel]) -> str:
    """The labels in order, a critical mistake written `mistake!`."""
    return " ".join(label.label + ("!" if label.critical else "") for label in labels)


# --- errored actions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("harness", HARNESSES)
def test_an_errored_command_is_a_mistake_and_the_next_success_a_recovery(harness: str) -> None:
    ep = episode(
        harness,
        [
            (bash("cat READMEE"), "cat: READMEE: No such file or directory\n\n[exit code 1]"),
            (bash("cat README.md"), "isodate\n======="),
            (
                bash("sleep 500"),
                "bash: line 9: 20 Killed  sleep 500\n\n[timed out after 120 s]\n[exit code 124]",
            ),
            (bash("ls"), "src\ntests"),
            (SUBMIT, SUBMITTED),
        ],
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake recovery mistake recovery mistake!"
    assert labels[0].reason == "exit code 1 from `cat READMEE`"
    assert labels[1].reason == "succeeds after the failed step 1"
    assert labels[2].reason == "`sleep 500` timed out"
    assert labels[4].reason == "ended the episode unresolved (reward 0)"
    assert trained_steps(ep, labels) == replies(ep)[:4]
    assert trained_steps(ep, labels, "good") == [replies(ep)[1], replies(ep)[3]]


@pytest.mark.parametrize("harness", HARNESSES)
def test_answers_test_runs_and_reproductions_are_not_errors(harness: str) -> None:
    ep = episode(
        harness,
        [
            (bash("grep -rn nosuchthing src"), "\n[exit code 1]"),
            (bash("python -m pytest -q tests/test_duration.py"), PYTEST_1_FAILED),
            (bash("python -m unittest tests.test_duration 2>&1 | tail -5"), UNITTEST_FAILED),
            (bash("python -c 'import isodate; isodate.Duration(1).totimedelta(end=None)'"), REPRODUCED),
            (bash("python -c 'import isodate; isodate.Duration(1).totimedelta()'"), OTHER_TRACEBACK),
            (bash("python -m pytest -q tests/nope.py"), "no tests ran in 0.01s\n\n[exit code 5]"),
        ],
        status="step_limit",
    )
    labels = labels_of(ep)
    assert kinds(labels) == "good good good good mistake mistake"
    assert [label.reason for label in labels[:4]] == [
        "`grep -rn nosuchthing src` found nothing",
        "tests: 132 passed, 1 failed",
        "tests: 3 passed, 1 failed",
        "reproduces the reported error",
    ]
    assert labels[4].reason.startswith("exit code 1 from `python -c")
    assert labels[5].reason == "exit code 5 from `python -m pytest -q tests/nope.py`"


def test_a_traceback_without_an_exit_code_is_an_error() -> None:
    ep = episode(
        "bash-only", [(bash("python repro.py | tail -3"), OTHER_TRACEBACK.replace("\n\n[exit code 1]", ""))]
    )
    [label] = labels_of(ep)
    assert (label.label, label.reason) == ("mistake", "a traceback from `python repro.py | tail -3`")


@pytest.mark.parametrize("harness", ["tool-calling", "react"])
def test_editor_and_invalid_call_errors_are_mistakes(harness: str) -> None:
    ep = episode(
        harness,
        [
            (
                editor("view", "src/nope.py"),
                "Error: /workspace/repo/src/nope.py does not exist; check the path",
            ),
            (tool("bash"), "Error: tool 'bash' is missing required argument(s): command"),
            (
                tool("python", code="1"),
                "Error: unknown tool 'python'; tools: bash, str_replace_editor, submit",
            ),
        ],
        status="step_limit",
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake! mistake mistake"  # three failures in a row: flailing
    assert labels[0].reason == (
        "str_replace_editor: /workspace/repo/src/nope.py does not exist; check the path; "
        "starts 3 failed steps in a row"
    )
    assert labels[1].reason == "tool 'bash' is missing required argument(s): command"
    assert labels[2].reason == "unknown tool 'python'; tools: bash, str_replace_editor, submit"
    assert trained_steps(ep, labels) == []


@pytest.mark.parametrize("harness", ["tool-calling", "react"])
def test_claw_service_errors_are_mistakes_but_injected_faults_are_not(harness: str) -> None:
    ep = episode(
        harness,
        [
            (tool("mail_search", folder="inbox"), RATE_LIMITED),
            (tool("mail_search", folder="inbox"), INBOX),  # the retry a robust agent makes
            (tool("mail_read", id="m999"), MISSING),
            (tool("mail_read", id="m8"), '{\n "id": "m8"\n}'),
            (tool("mail_search", folder="inbox"), "Error: the mail service did not answer within 5 s."),
            (FINISH, FINISHED),
        ],
        env=CLAW,
        resolved=True,
        reward=1.0,
    )
    labels = labels_of(ep)
    assert kinds(labels) == "good good mistake recovery good good"
    assert labels[0].reason == "a service fault (429), not the agent's doing"
    assert labels[2].reason == "mail_read: 404 no message with id 'm999'"
    assert labels[4].reason == "a service fault (timeout), not the agent's doing"
    assert trained_steps(ep, labels) == replies(ep)  # resolved: every step, whatever the labels


# --- format errors and repeats ---------------------------------------------------------------------------


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_reply_without_an_action_is_a_mistake_and_the_same_reply_again_critical(harness: str) -> None:
    ramble = "You can use the `filter` function to filter the list of messages."
    ep = episode(
        harness, [(ramble, ""), (bash("ls"), "src"), (ramble, ""), (ramble, "")], status="format_errors"
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake recovery mistake! mistake!"
    assert labels[0].reason.startswith("no action in the reply (")
    assert labels[2].reason == "repeats the failed step 1"  # a read in between changes nothing
    assert labels[3].reason == "repeats the failed step 3"
    assert trained_steps(ep, labels) == replies(ep)[:2]


@pytest.mark.parametrize("harness", HARNESSES)
def test_repeating_a_failed_command_is_critical_unless_something_changed(harness: str) -> None:
    steps: list[Step] = [
        (bash("pytset"), NOT_FOUND),
        (bash("pytset"), NOT_FOUND_AGAIN),  # the line number differs; still the same failure
    ]
    assert kinds(labels_of(episode(harness, steps, status="step_limit"))) == "mistake mistake!"
    assert labels_of(episode(harness, steps, status="step_limit"))[1].reason == "repeats the failed step 1"
    for between in ["sed -i 's/x/y/' src/isodate/duration.py", "python fix.py", "echo y > src/x.py"]:
        changed: list[Step] = [
            (bash("python repro.py"), OTHER_TRACEBACK),
            (bash(between), ""),  # may have changed files: re-checking after it is fair
            (bash("python repro.py"), OTHER_TRACEBACK),
        ]
        labels = labels_of(episode(harness, changed, status="step_limit"))
        assert kinds(labels) == "mistake recovery mistake"
    reads: list[Step] = [
        (bash("python repro.py"), OTHER_TRACEBACK),
        (bash("git diff && cat src/x.py | grep -n def"), "1:def f():"),  # only reads
        (bash("python repro.py"), OTHER_TRACEBACK),
    ]
    assert kinds(labels_of(episode(harness, reads, status="step_limit"))) == "mistake recovery mistake!"


@pytest.mark.parametrize("harness", HARNESSES)
def test_the_same_result_again_is_unnecessary_and_a_third_time_a_loop(harness: str) -> None:
    ep = episode(
        harness,
        [
            (bash("python -m pytest -q"), PYTEST_1_FAILED),
            (bash("python -m pytest -q"), PYTEST_1_FAILED.replace("0.10s", "0.12s")),
            (bash("ls"), "src"),
            (bash("python -m pytest -q"), PYTEST_1_FAILED),
            (bash(""), ""),
        ],
        status="step_limit",
    )
    labels = labels_of(ep)
    assert kinds(labels) == "good unnecessary good mistake! unnecessary"
    assert labels[1].reason == "repeats step 1 with the same result"
    assert labels[3].reason == "repeats step 2 again with the same result: a loop"
    assert labels[4].reason == "an empty command"
    assert trained_steps(ep, labels) == replies(ep)[:3]
    assert trained_steps(ep, labels, "good") == [replies(ep)[0], replies(ep)[2]]


def test_a_reply_with_several_tool_calls_is_one_step() -> None:
    search = tool("mail_search", folder="inbox")
    ep = episode(
        "tool-calling",
        [
            ([search, tool("mail_read", id="m999")], [INBOX, MISSING]),
            ([search, tool("mail_read", id="m8")], [INBOX, '{\n "id": "m8"\n}']),  # one call is new
            ([search], [INBOX]),  # the third time with the same result
            ([FINISH, search], [FINISHED, "Not run: the episode had ended."]),
        ],
        env=CLAW,
        reward=0.4,
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake recovery mistake! mistake!"
    assert labels[0].reason == "mail_read: 404 no message with id 'm999'"
    assert labels[2].reason == "repeats step 2 again with the same result: a loop"
    assert labels[3].reason == "ended the episode unresolved (reward 0.4)"


def test_sending_the_same_thing_twice_is_a_duplicate() -> None:
    send = tool("mail_send", to=["a@acme.com"], subject="Hi", body="Hello")
    ep = episode(
        "tool-calling",
        [(send, '{\n "id": "m9",\n "subject": "Hi"\n}'), (send, '{\n "id": "m10",\n "subject": "Hi"\n}')],
        env=CLAW,
        status="step_limit",
    )
    assert [(label.label, label.critical, label.reason) for label in labels_of(ep)][1] == (
        "mistake",
        False,
        "makes again what step 1 made (a duplicate)",
    )


# --- reverted edits --------------------------------------------------------------------------------------

EDITED = "The file /workspace/repo/src/isodate/duration.py has been edited. Here is a snippet of the result"


@pytest.mark.parametrize("harness", ["tool-calling", "react"])
def test_an_edit_undone_with_the_editor_is_a_mistake_and_the_undo_a_recovery(harness: str) -> None:
    path = "/workspace/repo/src/isodate/duration.py"
    ep = episode(
        harness,
        [
            (editor("str_replace", "src/isodate/duration.py", old_str="a", new_str="b"), EDITED),
            (editor("view", path), "Here is the result of running `cat -n`"),
            (editor("undo_edit", path), f"Last edit to {path} undone successfully. Its content now:\n 1\ta"),
            (editor("str_replace", path, old_str="c", new_str="d"), EDITED),
            (editor("str_replace", path, old_str="d", new_str="c"), EDITED),  # swapped back by hand
        ],
        status="step_limit",
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake good recovery mistake recovery"
    assert labels[0].reason == "its edit of src/isodate/duration.py was undone at step 3"
    assert labels[2].reason == "undoes step 1"
    assert labels[4].reason == "undoes step 4"


@pytest.mark.parametrize("harness", HARNESSES)
def test_files_put_back_with_git_revert_the_edits_on_them(harness: str) -> None:
    script = "python - <<'EOF'\nopen('src/a.py', 'w').write('x > y')\nEOF"
    ep = episode(
        harness,
        [
            (
                bash("sed -i 's/if not (start is not None):/if start is not None:/' src/isodate/duration.py"),
                "",
            ),
            (bash("cat > /tmp/notes.txt <<'EOF'\nif a > b: keep\nEOF"), ""),
            (bash("git checkout -- src/isodate"), "Updated 1 path from the index\n"),
            (bash(script), ""),
            (bash("git stash"), "Saved working directory and index state WIP on main: bed9c97 base\n"),
        ],
        status="step_limit",
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake good recovery mistake recovery"
    assert labels[0].reason == "its change was undone at step 3"
    assert labels[3].reason == "its change was undone at step 5"


def test_claw_items_removed_again_are_reverted_work() -> None:
    ep = episode(
        "react",
        [
            (tool("docs_create", title="Plan", content="x"), '{\n "id": "d7",\n "title": "Plan"\n}'),
            (tool("mail_label", id="m1", add=["x"]), '{\n "id": "m1",\n "labels": [\n  "x"\n ]\n}'),
            (tool("mail_label", id="m1", remove=["x"]), '{\n "id": "m1",\n "labels": []\n}'),
            (tool("docs_delete", id="d7"), '{\n "deleted": "d7"\n}'),
        ],
        env=CLAW,
        status="step_limit",
    )
    labels = labels_of(ep)
    assert kinds(labels) == "mistake mistake recovery recovery"
    assert labels[0].reason == "the item d7 it made was undone at step 4"
    assert labels[1].reason == "the label 'x' it added was undone at step 3"


# --- test runs that got worse ----------------------------------------------------------------------------


@pytest.mark.parametrize("harness", HARNESSES)
def test_a_test_run_that_got_worse_blames_the_edit_before_it(harness: str) -> None:
    pytest_run = bash("cd /workspace/repo && python -m pytest -q tests/test_duration.py 2>&1 | tail -5")
    grep = bash("grep -n 'start is not None' src/isodate/duration.py")
    breaking = bash(
        "sed -i 's/if not (start is not None):/if not (start is not None)/' src/isodate/duration.py"
    )
    broken: list[Step] = [
        (pytest_run, PYTEST_1_FAILED),
        (grep, "314:        if not (start is not None):"),
        (bash("python check.py"), "ok"),  # may have written, but the named edit after it is the one to blame
        (breaking, ""),
        (bash("python -m pytest -q tests/test_duration.py"), PYTEST_COLLECTION_ERROR),  # the same tests
        (bash("ls"), "src"),
    ]
    ep = episode(harness, broken, status="step_limit")
    labels = labels_of(ep)
    assert kinds(labels) == "good good good mistake! good good"
    assert labels[3].reason == (
        "`python -m pytest -q tests/test_duration.py` got worse by step 5 (132 passed, 1 failed -> 0 passed, "
        "1 failed)"
    )
    assert trained_steps(ep, labels) == replies(ep)[:3]
    fixed = [*broken, (bash("python -m pytest -q tests/test_duration.py"), PYTEST_PASSED)]
    labels = labels_of(episode(harness, fixed, status="step_limit"))
    assert kinds(labels) == "good good good mistake good good good"
    assert labels[3].reason.endswith(", undone later")


def test_a_worse_run_of_a_different_test_command_is_not_compared() -> None:
    ep = episode(
        "bash-only",
        [
            (bash("python -m pytest -q tests/test_duration.py"), PYTEST_PASSED),
            (bash("sed -i 's/a/b/' src/x.py"), ""),
            (
                bash("python -m pytest -q tests/test_duration.py::test_totimedelta"),
                "1 failed in 0.1s\n\n[exit code 1]",
            ),
        ],
        status="step_limit",
    )
    assert kinds(labels_of(ep)) == "good good good"


# --- runs of the real envs -------------------------------------------------------------------------------


class Script(Agent):
    """Plays fixed env actions through the harness, as the scripted agents do."""

    name = "script"

    def __init__(self, actions: list[dict[str, Any]]) -> None:
        self.actions = actions

    def start(self, context: EpisodeContext) -> None:
        self.turns = [context.encode(action) for action in self.actions]

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        return self.turns.pop(0)


@pytest.mark.bwrap
def test_a_real_swe_episode_under_bash_only(local_backend: Any) -> None:
    tests = "python -m pytest -q tests/test_duration.py"
    actions = [
        bash(tests),
        bash("grep -n 'if not (start is not None):' src/isodate/duration.py"),
        bash("sed -i 's/if not (start is not None):/if not (start is not None)/' src/isodate/duration.py"),
        bash(tests),
        bash("git checkout src/isodate/duration.py"),
        bash("pytset"),
        bash("sed -i 's/if not (start is not None):/if start is not None:/' src/isodate/duration.py"),
        bash(tests),
        bash("git diff --stat"),
        SUBMIT,
    ]
    env = gym.make("orchard/SWE-v0", backend=local_backend, max_steps=20)
    try:
        ep = run_episode(env, get_harness("bash-only"), Script(actions), task_id=INVERTED)
    finally:
        env.close()
    assert ep.metadata.resolved is True
    labels = labels_of(ep)
    assert kinds(labels) == "good good mistake good recovery mistake recovery good good good"
    assert labels[0].reason == "tests: 132 passed, 1 failed"
    assert labels[2].reason == "its change was undone at step 5"
    assert labels[5].reason == "exit code 127 from `pytset`"
    assert labels[7].reason == "tests: 133 passed, 0 failed"
    # Had it ended unresolved, everything up to the end would train under `prefix`; `good` drops mistakes.
    unresolved = ep.model_copy(update={"metadata": ep.metadata.model_copy(update={"resolved": False})})
    labels = labels_of(unresolved)
    assert labels[-1].critical and trained_steps(unresolved, labels) == replies(ep)[:-1]
    assert trained_steps(unresolved, labels, "good") == [
        index for index, label in zip(replies(ep)[:-1], labels, strict=False) if label.label != "mistake"
    ]


def test_a_real_claw_episode_under_react() -> None:
    actions = [
        tool("mail_read", id="m999"),
        tool("mail_read"),
        tool("mail_search", folder="inbox"),
        tool("mail_label", id="m1", add=["x"]),
        tool("mail_label", id="m1", remove=["x"]),
        tool("mail_search", folder="inbox"),
        tool("mail_search", folder="inbox"),
        tool("finish", answer="done"),
    ]
    env = gym.make("orchard/Claw-v0", suite="claw-mini")
    try:
        task_id = env.unwrapped.tasks[0].task_id
        ep = run_episode(env, get_harness("react"), Script(actions), task_id=task_id)
    finally:
        env.close()
    assert ep.metadata.resolved is False
    labels = labels_of(ep)
    assert kinds(labels) == "mistake mistake recovery mistake recovery good unnecessary mistake!"
    assert labels[0].reason == "mail_read: 404 no message with id 'm999'"
    assert labels[1].reason == "tool 'mail_read' is missing required argument(s): id"
    assert labels[3].reason == "the label 'x' it added was undone at step 5"
    assert labels[6].reason == "repeats step 6 with the same result"
    assert trained_steps(ep, labels) == replies(ep)[:-1]
    assert trained_steps(ep, labels, "good") == [replies(ep)[i] for i in (2, 4, 5)]


@pytest.mark.parametrize("env_id", ["orchard/SWE-v0", "orchard/Claw-v0"])
def test_oracle_episodes_have_no_mistakes(env_id: str, local_backend: Any) -> None:
    """Recorded here rather than read from a demo run, so it runs on a fresh checkout too."""
    from orchard_envs.agents import get_agent

    options = {"backend": local_backend, "split": "test"} if env_id == "orchard/SWE-v0" else {"split": "test"}
    env = gym.make(env_id, suite="swe-mini" if env_id == "orchard/SWE-v0" else "claw-mini", **options)
    try:
        tasks = env.unwrapped.tasks if env_id == "orchard/Claw-v0" else env.unwrapped.instances
        for task in tasks:
            task_id = getattr(task, "task_id", None) or task.instance_id
            ep = run_episode(env, get_harness("tool-calling"), get_agent("oracle"), task_id=task_id)
            assert ep.metadata.resolved is True, task_id
            assert {label.label for label in labels_of(ep)} == {"good"}, task_id
    finally:
        env.close()


# --- trained_steps and the registry ----------------------------------------------------------------------


@st.composite
def labelled_episodes(draw: Any) -> tuple[Episode, list[StepLabel]]:
    n = draw(st.integers(0, 8))
    ep = episode(
        "tool-calling",
        [(bash(f"echo {i}"), str(i)) for i in range(n)],
        resolved=draw(st.sampled_from([True, False, None])),
    )
    labels = []
    for index in replies(ep):
        label = draw(st.sampled_from(LABELS))
        labels.append(StepLabel(index, label, label == "mistake" and draw(st.booleans()), "r"))
    return ep, labels


@given(labelled_episodes(), st.sampled_from(["prefix", "good"]))
def test_trained_steps_properties(case: tuple[Episode, list[StepLabel]], policy: str) -> None:
    ep, labels = case
    trained = trained_steps(ep, labels, policy)
    assert trained == sorted(set(trained)) and set(trained) <= set(replies(ep))
    if ep.metadata.resolved is True:
        assert trained == replies(ep) == trained_steps(ep, [], policy)
        return
    cut = next((label.message_index for label in labels if label.critical), None)
    prefix = trained_steps(ep, labels, "prefix")
    assert prefix == [i for i in replies(ep) if cut is None or i < cut]
    assert set(trained) <= set(prefix)
    if policy == "good":
        assert all(label.label in ("good", "recovery") for label in labels if label.message_index in trained)


CHUNKS = [
    (bash("ls"), "src"),
    (bash("ls"), "src"),
    (bash("pytset"), NOT_FOUND),
    (bash("python -m pytest -q"), PYTEST_1_FAILED),
    (bash("python -m pytest -q"), PYTEST_COLLECTION_ERROR),
    (bash("sed -i 's/a/b/' src/x.py"), ""),
    (bash("git checkout ."), ""),
    (bash("python repro.py"), REPRODUCED),
    (tool("bash"), "Error: tool 'bash' is missing required argument(s): command"),
    ("no action here", ""),
    (SUBMIT, SUBMITTED),
]


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HARNESSES), st.lists(st.sampled_from(CHUNKS), max_size=12))
def test_the_heuristic_labels_every_step_once_in_order(harness: str, steps: list[Step]) -> None:
    if harness == "bash-only":  # it has no way to write a bash call without a command
        steps = [step for step in steps if step[0] != tool("bash")]
    ep = episode(harness, steps, status="step_limit")
    labels = labels_of(ep)
    assert all(label.reason and "\n" not in label.reason for label in labels)
    assert set(trained_steps(ep, labels, "good")) <= set(trained_steps(ep, labels))


def test_trained_steps_refuses_unknown_policies_and_mismatched_labels() -> None:
    ep = episode("tool-calling", [(bash("ls"), "src"), (SUBMIT, SUBMITTED)])
    labels = labels_of(ep)
    with pytest.raises(ConfigError, match="did you mean 'prefix'"):
        trained_steps(ep, labels, "prefx")
    with pytest.raises(ValueError, match="one label per assistant message"):
        trained_steps(ep, labels[:1])
    with pytest.raises(ValueError, match="only a mistake can be critical"):
        StepLabel(2, "good", True, "r")
    with pytest.raises(ValueError, match="not one of"):
        StepLabel(2, "bad", False, "r")  # type: ignore[arg-type]


def test_make_scorer() -> None:
    assert set(SCORERS) == {"heuristic", "judge"}
    assert make_scorer("heuristic").name == "heuristic"
    assert make_scorer("judge", agent=CannedJudge("")).name == "judge"
    with pytest.raises(ConfigError, match="did you mean 'heuristic'"):
        make_scorer("heuristc")
    with pytest.raises(ConfigError, match="'agent'"):
        make_scorer("judge")
    with pytest.raises(ConfigError, match="error_streak must be at least 2"):
        make_scorer("heuristic", error_streak=1)


# --- the judge -------------------------------------------------------------------------------------------


class CannedJudge(Agent):
    """Answers every request with `reply(prompt)`; records the requests (a stand-in for a model endpoint)."""

    name = "canned"

    def __init__(self, reply: Any) -> None:
        self.reply = reply if callable(reply) else (lambda prompt: reply)
        self.prompts: list[str] = []

    def clone(self) -> CannedJudge:
        return self  # one shared record of the requests

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        assert tools == [] and messages[0]["role"] == "system"
        self.prompts.append(messages[-1]["content"])
        return AssistantTurn(content=self.reply(messages[-1]["content"]))


JUDGED = [
    (bash("ls"), "src"),
    (bash("pytset"), NOT_FOUND),
    (bash("cat src/x.py"), "x = 1\n" * 2_000),
    (SUBMIT, SUBMITTED),
]


def test_the_judge_reply_is_parsed_leniently() -> None:
    reply = (
        "Sure! Here are my labels:\n```json\n"
        '{"step": 1, "label": "good", "critical": false, "reason": "looks around"}\n'
        '{"step": "2", "label": "Mistake", "critical": "true", "reason": "a typo\\nin the command"}\n'
        '{"step": 3, "label": "recovery", "critical": true}\n'
        '{"step": 3, "label": "good", "reason": "a second answer for step 3 is ignored"}\n'
        '{"step": 9, "label": "good"}\n'
        "```\nHope this helps."
    )
    ep = episode("bash-only", JUDGED)
    labels = JudgeScorer(CannedJudge(reply)).score(ep)
    assert [label.message_index for label in labels] == replies(ep)
    assert [(label.label, label.critical, label.reason) for label in labels[:3]] == [
        ("good", False, "judge: looks around"),
        ("mistake", True, "judge: a typo in the command"),
        ("recovery", False, "judge: recovery"),
    ]
    heuristic = labels_of(ep)[3]
    assert (labels[3].label, labels[3].critical) == (heuristic.label, heuristic.critical)
    assert labels[3].reason == f"judge: no label for this step; heuristic: {heuristic.reason}"


def test_invalid_judge_labels_and_overflows_fall_back_to_the_heuristic() -> None:
    ep = episode("tool-calling", JUDGED)
    labels = JudgeScorer(CannedJudge('{"step": 1, "label": "bad"}\n{"step": 2, "label": 7}')).score(ep)
    heuristic = labels_of(ep)
    assert [(label.label, label.critical) for label in labels] == [(h.label, h.critical) for h in heuristic]
    assert labels[0].reason == (
        "judge: label 'bad' is not one of good, unnecessary, mistake, recovery; heuristic: no sign of trouble"
    )
    assert labels[1].reason.startswith("judge: label 7 is not one of")

    def overflow(prompt: str) -> str:
        raise ContextOverflow("prompt too long")

    labels = JudgeScorer(CannedJudge(overflow)).score(ep)
    assert all(
        label.reason.startswith("judge: the request did not fit its context window") for label in labels
    )


def test_the_judge_sees_windows_of_steps_with_clipped_observations() -> None:
    def good_for_the_window(prompt: str) -> str:
        first, last = map(int, re.search(r"Label steps (\d+) to (\d+)", prompt).groups())  # type: ignore[union-attr]
        return "\n".join(
            json.dumps({"step": n, "label": "good", "reason": f"w{first}"}) for n in range(first, last + 1)
        )

    judge = CannedJudge(good_for_the_window)
    ep = episode("react", JUDGED)
    labels = JudgeScorer(judge, window=3, observation_chars=300).score(ep)
    assert [label.reason for label in labels] == ["judge: w1"] * 3 + ["judge: w4"]
    first, second = judge.prompts
    assert (
        "Task:\n<problem_statement>" in first
        and "Outcome: not resolved (status submitted, reward 0)" in first
    )
    assert "### Step 3" in first and "characters omitted" in first and "### Step 4" not in first
    assert "Earlier steps:\n1. <tool_call>" in second and "3. <tool_call>" in second
    assert "### Step 4" in second and "Label steps 4 to 4" in second
    with pytest.raises(ConfigError, match="window"):
        JudgeScorer(judge, window=0)


def test_a_real_model_as_judge_still_labels_every_step(hf_generator: Any) -> None:
    """The tiny embedded model answers with junk: every step it fails to label keeps the heuristic's."""
    from orchard_envs.agents.hf import HFAgent

    ep = episode("tool-calling", JUDGED[:2] + JUDGED[3:])
    judge = JudgeScorer(HFAgent(generator=hf_generator, max_new_tokens=32), observation_chars=200)
    labels = judge.score(ep)
    assert [label.message_index for label in labels] == replies(ep)
    assert all(label.reason.startswith("judge: ") for label in labels)
