"""The heuristic scorer: labels steps from env signals only (no model), by one pass per kind of finding.

Besides errored actions (see `signals`), it looks for:

- a reverted edit: editor `undo_edit`, a `str_replace` swapped back, `git checkout/restore/stash/reset --hard`
  over an edited file; in Claw, an item created and then deleted or cancelled, a label added then removed.
- a worse test run: the same test command (pytest or unittest output) reports fewer passes, or more failures
  and no more passes, than its previous run; blamed on the first edit since that run.
- a repeated action: the same tool and arguments (or the same reply text) as an earlier step, with nothing
  written in between, so it could not have turned out differently. A Claw call that creates the same item
  again (a second identical email, event, order) is a duplicate: a mistake.

Each step is named by its weightiest finding; which findings are critical is explained in the package
docstring.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any

from orchard_envs.agents.base import END_TOOLS
from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError
from orchard_envs.trainers.credit.labels import StepLabel, StepLabelName, one_line
from orchard_envs.trainers.credit.signals import (
    EDITOR_WRITES,
    Counts,
    Outcome,
    bash_written,
    command_key,
    covers,
    created_id,
    effects,
    git_reverted,
    normal,
    outcome_of,
    repo_path,
    took_effect,
)
from orchard_envs.trainers.credit.steps import FORMAT_ERROR, Call, parse_steps, task_text


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


class _Scoring:
    """One episode under the heuristic: its steps, each call's outcome, and what was found about each step."""

    def __init__(self, episode: Episode) -> None:
        self.episode = episode
        self.steps = parse_steps(episode)
        statement = task_text(episode)
        self.outcomes = [[outcome_of(call, statement) for call in step.calls] for step in self.steps]
        self.failed = [
            step.format_error is not None or any(o.failure for o in outcomes)
            for step, outcomes in zip(self.steps, self.outcomes, strict=True)
        ]
        changes = [[effects(call, o) for call, o in self.calls(pos)] for pos in range(len(self.steps))]
        self.wrote = [any(wrote for wrote, _ in step) for step in changes]
        self.edited = [any(edited for _, edited in step) for step in changes]
        self.writes_before = [0, *accumulate(self.wrote)]  # writing steps before each step
        self.found: list[list[_Finding]] = [[] for _ in self.steps]

    def calls(self, pos: int) -> Iterator[tuple[Call, Outcome]]:
        """The step's calls, each with its outcome."""
        return zip(self.steps[pos].calls, self.outcomes[pos], strict=True)

    def add(self, pos: int, label: StepLabelName, reason: str, critical: bool = False) -> None:
        self.found[pos].append(_Finding(label, critical, reason))

    def number(self, pos: int) -> int:
        return self.steps[pos].number

    def items(self, pos: int) -> list[tuple[str, Outcome, _Seen]]:
        """What the step did: (action key, outcome, record) per call; a reply with no action is keyed
        by its text."""
        step = self.steps[pos]
        if step.format_error is not None:
            why = one_line(f"no action in the reply ({step.format_error.removeprefix(FORMAT_ERROR).strip()})")
            seen = _Seen(pos, True, normal(step.format_error))
            return [(f"reply {step.action.strip()}", Outcome(failure=why), seen)]
        return [
            (
                call.key,
                outcome,
                _Seen(pos, bool(outcome.failure), normal(call.observation), created_id(call, outcome)),
            )
            for call, outcome in self.calls(pos)
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

        for pos in range(len(self.steps)):
            for call, outcome in self.calls(pos):
                if not took_effect(call, outcome):
                    continue
                args = call.arguments
                if call.name == "str_replace_editor" and args.get("command") in EDITOR_WRITES:
                    path = repo_path(args.get("path", ""))
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
                    specs = git_reverted(command)
                    if specs:
                        undone = [p for p, f in live if any(covers(s, f) for s in specs)]
                        live = [(p, f) for p, f in live if p not in undone]
                        for path in list(editor):
                            if any(covers(s, path) for s in specs):
                                del editor[path]
                        revert(pos, undone, "its change")
                    elif (written := bash_written(command)) is not None:
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
                elif made := created_id(call, outcome):
                    created[made] = pos
        return reverted

    def regressions(self, reverted: set[int]) -> None:
        """A test command that got worse: the first edit since its last run is a mistake, critical unless the
        edit was reverted or a later run got back to the earlier counts."""
        runs: dict[str, list[tuple[int, Counts]]] = {}
        worse: list[tuple[str, int, Counts, int, Counts]] = []
        for pos in range(len(self.steps)):
            for call, outcome in self.calls(pos):
                if outcome.tests is None:
                    continue
                key = command_key(str(call.arguments.get("command", "")))
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
            why = f"`{one_line(key, 60)}` got worse by step {self.number(pos)} ({before} -> {now})"
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
        """One label per assistant message, from errors, repeats, reverts, error streaks and the ending."""
        scoring = _Scoring(episode)
        scoring.errors_and_repeats()
        scoring.regressions(scoring.reverts())
        scoring.streaks(self.error_streak)
        scoring.ending()
        return scoring.labels()
