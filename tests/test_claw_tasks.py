"""Claw tasks: the suite, its generator, the checks and scoring, the simulated user, and every task's
reference plans replayed through a small pure-Python model of the services' tool semantics."""

from __future__ import annotations

import copy
import json
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.claw.checks import Score, evaluate, matches, robustness
from orchard_envs.tasks.claw.families import FAMILIES, SPLITS
from orchard_envs.tasks.claw.generate import generate_suite, task_record
from orchard_envs.tasks.claw.task import (
    OWNER,
    SERVICES,
    TOOL_ARGS,
    ClawTask,
    UserSim,
    dump_yaml,
    load_suite,
    load_yaml,
)
from orchard_envs.tasks.claw.user import EndpointUser, SimulatedUser, UserUnavailable

SUITE = load_suite("claw-mini")
FAULT_STATUS = {"429": 429, "500": 500, "timeout": 504}


# ---------------------------------------------------------------- a reference model of the services


class Simulator:
    """The tool semantics of docs/claw.md over plain dicts, with the task's fault schedules: enough to
    replay reference plans. A faulted call answers its fault status and changes nothing."""

    def __init__(self, task: ClawTask) -> None:
        self.task = task
        self.state = {
            service: {name: copy.deepcopy(task.fixtures.get(service, {}).get(name, [])) for name in names}
            for service, names in SERVICES.items()
        }
        self.seq: Counter[str] = Counter()
        self.trace: list[dict[str, Any]] = []
        self.user = SimulatedUser(task.user) if task.user else None
        self.replies: list[str] = []
        self.new_ids = 0

    def run(self, plan: list[dict[str, Any]]) -> tuple[dict, list[dict[str, Any]], str]:
        for step in plan:
            name, arguments = step["name"], step["arguments"]
            if name == "finish":
                self.trace.append({"tool": "finish", "arguments": arguments, "status": 200, "fault": None})
                return self.state, self.trace, arguments["answer"]
            self.call(name, arguments)
        return self.state, self.trace, ""

    def call(self, name: str, arguments: dict[str, Any]) -> None:
        record = {"tool": name, "arguments": arguments, "status": 200, "fault": None}
        self.trace.append(record)
        if name == "ask_user":
            assert self.user is not None
            self.replies.append(self.user.reply(arguments["question"]))
            return
        service = TOOL_ARGS[name].service
        assert service is not None
        seq = self.seq[service]
        self.seq[service] += 1
        faults = self.task.faults.get(service)
        if faults is not None and seq in faults.schedule:
            record["fault"] = faults.kinds[0]
            record["status"] = FAULT_STATUS[faults.kinds[0]]
            return
        record["status"] = getattr(self, name, lambda **_: 200)(**arguments)

    # helpers
    def _find(self, service: str, collection: str, rid: str) -> dict[str, Any] | None:
        return next((r for r in self.state[service][collection] if r["id"] == rid), None)

    def _new_id(self, prefix: str) -> str:
        self.new_ids += 1
        return f"{prefix}-new{self.new_ids}"

    def _patch(self, service: str, collection: str, rid: str, changes: dict[str, Any]) -> int:
        record = self._find(service, collection, rid)
        if record is None:
            return 404
        record.update(changes)
        return 200

    # mail
    def mail_read(self, id: str) -> int:
        return self._patch("mail", "messages", id, {"read": True})

    def mail_send(self, to: list[str], subject: str, body: str, cc: list[str] | None = None) -> int:
        mid = self._new_id("m")
        self.state["mail"]["messages"].append(
            {
                "id": mid,
                "folder": "sent",
                "from": OWNER,
                "to": to,
                "cc": cc or [],
                "subject": subject,
                "body": body,
                "labels": [],
                "date": "",
                "read": True,
                "thread_id": mid,
            }
        )
        return 200

    def mail_reply(self, id: str, body: str) -> int:
        original = self._find("mail", "messages", id)
        if original is None:
            return 404
        self.state["mail"]["messages"].append(
            {
                "id": self._new_id("m"),
                "folder": "sent",
                "from": OWNER,
                "to": [original["from"]],
                "cc": [],
                "subject": f"Re: {original['subject']}",
                "body": body,
                "labels": [],
                "date": "",
                "read": True,
                "thread_id": original["thread_id"],
            }
        )
        return 200

    def mail_move(self, id: str, folder: str) -> int:
        return self._patch("mail", "messages", id, {"folder": folder})

    def mail_label(self, id: str, add: list[str] | None = None, remove: list[str] | None = None) -> int:
        record = self._find("mail", "messages", id)
        if record is None:
            return 404
        labels = [label for label in record["labels"] if label not in (remove or [])]
        record["labels"] = labels + [label for label in add or [] if label not in labels]
        return 200

    # calendar
    def calendar_create(
        self,
        title: str,
        start: str,
        end: str,
        attendees: list[str] | None = None,
        location: str = "",
        description: str = "",
    ) -> int:
        self.state["calendar"]["events"].append(
            {
                "id": self._new_id("e"),
                "title": title,
                "start": start,
                "end": end,
                "attendees": attendees or [],
                "location": location,
                "description": description,
            }
        )
        return 200

    def calendar_update(self, id: str, **changes: Any) -> int:
        return self._patch("calendar", "events", id, changes)

    def calendar_invite(self, id: str, attendees: list[str]) -> int:
        record = self._find("calendar", "events", id)
        if record is None:
            return 404
        record["attendees"] += [a for a in attendees if a not in record["attendees"]]
        return 200

    # contacts, docs, todo
    def contacts_get(self, id: str) -> int:
        return 200 if self._find("contacts", "contacts", id) else 404

    def contacts_create(self, name: str, **fields: Any) -> int:
        self.state["contacts"]["contacts"].append(
            {
                "id": self._new_id("c"),
                "name": name,
                "email": "",
                "phone": "",
                "company": "",
                "title": "",
                "notes": "",
                **fields,
            }
        )
        return 200

    def contacts_update(self, id: str, **changes: Any) -> int:
        return self._patch("contacts", "contacts", id, changes)

    def docs_read(self, id: str) -> int:
        return 200 if self._find("docs", "documents", id) else 404

    def docs_create(self, title: str, content: str, path: str = "/") -> int:
        self.state["docs"]["documents"].append(
            {"id": self._new_id("d"), "path": path, "title": title, "content": content, "updated": ""}
        )
        return 200

    def docs_update(self, id: str, **changes: Any) -> int:
        return self._patch("docs", "documents", id, changes)

    def docs_delete(self, id: str) -> int:
        before = len(self.state["docs"]["documents"])
        self.state["docs"]["documents"] = [d for d in self.state["docs"]["documents"] if d["id"] != id]
        return 200 if len(self.state["docs"]["documents"]) < before else 404

    def todo_create(
        self, title: str, due: str | None = None, priority: str = "normal", list: str = "inbox"
    ) -> int:
        self.state["todo"]["tasks"].append(
            {
                "id": self._new_id("t"),
                "title": title,
                "due": due,
                "done": False,
                "priority": priority,
                "list": list,
            }
        )
        return 200

    def todo_update(self, id: str, **changes: Any) -> int:
        return self._patch("todo", "tasks", id, changes)

    def todo_delete(self, id: str) -> int:
        before = len(self.state["todo"]["tasks"])
        self.state["todo"]["tasks"] = [t for t in self.state["todo"]["tasks"] if t["id"] != id]
        return 200 if len(self.state["todo"]["tasks"]) < before else 404

    # search, shop
    def web_open(self, id: str) -> int:
        return 200 if self._find("search", "pages", id) else 404

    def shop_order(self, product_id: str, quantity: int, address: str) -> int:
        product = self._find("shop", "products", product_id)
        if product is None:
            return 404
        if quantity < 1 or product["stock"] < quantity:
            return 409
        product["stock"] -= quantity
        self.state["shop"]["orders"].append(
            {
                "id": self._new_id("o"),
                "product_id": product_id,
                "quantity": quantity,
                "status": "placed",
                "address": address,
            }
        )
        return 200

    def shop_cancel(self, id: str) -> int:
        order = self._find("shop", "orders", id)
        if order is None:
            return 404
        if order["status"] in ("shipped", "delivered", "cancelled"):
            return 409
        order["status"] = "cancelled"
        return 200


def replay(task: ClawTask, plan: list[dict[str, Any]]) -> tuple[Score, Simulator]:
    sim = Simulator(task)
    state, trace, answer = sim.run(plan)
    return evaluate(task, state, trace, answer), sim


def plan_of(actions: list[Any]) -> list[dict[str, Any]]:
    return [action.model_dump() for action in actions]


def explain(task: ClawTask, score: Score) -> str:
    return f"{task.task_id}: {score.model_dump()}"


# ---------------------------------------------------------------- every task's reference plans


@pytest.mark.parametrize("task", SUITE, ids=lambda task: task.task_id)
def test_oracle_passes_wrong_and_noop_fail(task: ClawTask) -> None:
    oracle, sim = replay(task, plan_of(task.oracle))
    assert oracle.passed and oracle.completion == 1.0 and oracle.score == 1.0, explain(task, oracle)
    assert all(status == 200 or call["fault"] for call in sim.trace for status in [call["status"]]), sim.trace
    if task.user is not None:
        assert sim.replies and all(reply != task.user.default for reply in sim.replies), sim.replies
    wrong, _ = replay(task, plan_of(task.wrong))
    assert not wrong.passed, explain(task, wrong)
    noop, _ = replay(task, [{"name": "finish", "arguments": {"answer": ""}}])
    assert not noop.passed, explain(task, noop)
    if task.faults:  # the fault hits the oracle, and the oracle without its retry does worse
        assert any(call["fault"] for call in sim.trace)
        retried = next(
            n for n, (a, b) in enumerate(zip(task.oracle, task.oracle[1:], strict=False)) if a == b
        )
        no_retry, _ = replay(task, plan_of(task.oracle[:retried] + task.oracle[retried + 1 :]))
        assert no_retry.score < oracle.score


# ---------------------------------------------------------------- the suite and the generator


def test_suite_shape() -> None:
    assert len(SUITE) >= 150
    assert len({task.category for task in SUITE}) >= 8
    splits = Counter((task.family, task.split) for task in SUITE)
    for family in {task.family for task in SUITE}:
        assert splits[family, "train"] > splits[family, "test"] > 0
    ids = [task.task_id for task in SUITE]
    assert len(ids) == len(set(ids))
    for task in SUITE:
        assert re.fullmatch(rf"{task.family}-{task.split}-\d{{4}}", task.task_id)
    faulted = sum(bool(task.faults) for task in SUITE) / len(SUITE)
    assert 0.1 <= faulted <= 0.35
    assert {task.split for task in load_suite("claw-mini", split="test")} == {"test"}


def test_bundled_suite_is_what_the_generator_makes() -> None:
    assert [task_record(task) for task in generate_suite(seed=0)] == [task_record(task) for task in SUITE]


def test_generation_is_deterministic_per_seed() -> None:
    first = [task_record(task) for task in generate_suite(seed=3, per_family=3)]
    assert first == [task_record(task) for task in generate_suite(seed=3, per_family=3)]
    other = [task_record(task) for task in generate_suite(seed=4, per_family=3)]
    assert [t["task_id"] for t in other] == [t["task_id"] for t in first]
    assert sum(a != b for a, b in zip(first, other, strict=True)) >= len(first) // 2
    assert len(generate_suite(seed=0, per_family={"scheduling": 4})) == 4


def _pattern(template: str) -> re.Pattern[str]:
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(".+?")
    return re.compile("".join(parts), re.DOTALL)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_train_and_test_phrasings_are_disjoint(name: str) -> None:
    family = FAMILIES[name]
    for variant in family.templates.values():
        assert len(variant["train"]) >= 2 and len(variant["test"]) >= 2
    train, test = set(family.prompt_templates("train")), set(family.prompt_templates("test"))
    assert not train & test
    patterns = {split: [_pattern(t) for t in family.prompt_templates(split)] for split in SPLITS}
    prompts = {split: {t.prompt for t in SUITE if t.family == name and t.split == split} for split in SPLITS}
    assert not prompts["train"] & prompts["test"]
    for split, other in (("train", "test"), ("test", "train")):
        for prompt in prompts[split]:
            assert any(p.fullmatch(prompt) for p in patterns[split]), prompt
            assert not any(p.fullmatch(prompt) for p in patterns[other]), prompt


def test_plans_and_checks_only_use_the_task_tools_and_services() -> None:
    for task in SUITE:
        assert "finish" in task.tools and ("ask_user" in task.tools) == (task.user is not None)
        for action in task.oracle + task.wrong:
            assert action.name in task.tools, (task.task_id, action.name)
        assert task.oracle[-1].name == "finish" and task.wrong[-1].name == "finish"
        reachable = task.services() | set(task.fixtures)
        for item in [*task.scoring_components, *task.safety_checks]:
            check = item.check
            if check.service is not None:
                assert check.service in reachable, (task.task_id, item.name)
                assert check.collection in SERVICES[check.service]
            if check.type == "call_made":
                assert check.tool in task.tools
        for service in task.faults:
            assert any(TOOL_ARGS[a.name].service == service for a in task.oracle), task.task_id


def test_tool_table_agrees_with_the_catalog_and_plans_fit_its_schemas() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    catalog = pytest.importorskip("orchard_envs.tasks.claw.catalog")
    assert set(TOOL_ARGS) == set(catalog.TOOLS)
    for name, spec in catalog.TOOLS.items():
        mine = TOOL_ARGS[name]
        assert mine.service == spec.service, name
        assert set(mine.required) == set(spec.parameters.get("required", [])), name
        assert set(mine.required + mine.optional) == set(spec.parameters.get("properties", {})), name
    for task in SUITE:
        for action in task.oracle + task.wrong:
            jsonschema.validate(action.arguments, catalog.TOOLS[action.name].parameters)


# ---------------------------------------------------------------- files: YAML, JSONL, errors


def test_yaml_round_trip_and_directory_suites(tmp_path: Path) -> None:
    picked = [next(t for t in SUITE if t.family == name) for name in FAMILIES]
    for task in picked:
        path = tmp_path / f"{task.task_id}.yaml"
        dump_yaml(task, path)
        assert load_yaml(path) == task
    assert [t.task_id for t in load_suite(tmp_path)] == sorted(t.task_id for t in picked)
    assert load_suite(str(tmp_path / f"{picked[0].task_id}.yaml")) == [picked[0]]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps(task_record(t)) for t in picked) + "\n")
    assert load_suite(jsonl, split=picked[0].split)[0] == picked[0]


def _bad_yaml(tmp_path: Path, change: Any) -> ConfigError:
    record = task_record(next(t for t in SUITE if t.family == "email_triage"))
    change(record)
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    return info.value


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda r: r["oracle"].insert(0, {"name": "docs_delete", "arguments": {"id": "d1"}}),
            "oracle[0].name: 'docs_delete' is not one of the task's tools",
        ),
        (
            lambda r: r["scoring_components"][0]["check"].update(type="record_there"),
            "scoring_components.0.check.type",
        ),
        (lambda r: r["scoring_components"][0]["check"].pop("where"), "needs field 'where'"),
        (lambda r: r["scoring_components"][0]["check"].update(collection="inbox"), "no collection 'inbox'"),
        (lambda r: r["scoring_components"][0].update(weight=0), "scoring_components.0.weight"),
        (lambda r: r["tools"].remove("finish"), "'finish' must be one of the tools"),
        (
            lambda r: r.update(user={"persona": "p", "rules": [], "default": "d"}),
            "'ask_user' must be offered",
        ),
        (lambda r: r.pop("prompt"), "prompt: Field required"),
        (lambda r: r["oracle"][0]["arguments"].update(colour="red"), "takes no colour"),
        (
            lambda r: r["scoring_components"][0]["check"]["where"].update(folder={"startswith": "x"}),
            "matcher",
        ),
        (
            lambda r: r["scoring_components"][0]["check"]["where"].update(fodler="finance"),
            "scoring_components[0].check.where: mail.messages records have no field 'fodler' "
            "(did you mean 'folder'?), so this check can never pass",
        ),
        (
            lambda r: r["safety_checks"].append(
                {
                    "name": "x",
                    "check": {"type": "no_call", "tool": "mail_move", "where": {"folder_name": "a"}},
                }
            ),
            "check.where: mail_move calls have no field 'folder_name' (did you mean 'folder'?)",
        ),
    ],
)
def test_bad_task_files_name_the_file_and_field(tmp_path: Path, change: Any, expected: str) -> None:
    error = _bad_yaml(tmp_path, change)
    assert expected in str(error)
    assert "line " in str(error) and "email_triage-train-0000" in str(error)


def test_hand_written_yaml_dates_and_fault_kinds(tmp_path: Path) -> None:
    task = next(t for t in SUITE if t.family == "todo_management")
    text = re.sub(r"'(\d{4}-\d\d-\d\d)'", r"\1", dump_yaml(task))  # unquoted dates, as people write
    assert re.search(r"due: \d{4}-", text)
    text = text.replace("faults: {}\n", "faults:\n  todo:\n    kinds: [429]\n    schedule: [0]\n")
    (tmp_path / "task.yaml").write_text(text)
    loaded = load_yaml(tmp_path / "task.yaml")
    assert loaded.fixtures == task.fixtures and loaded.faults["todo"].kinds == ["429"]


def test_errors_point_at_the_yaml_line(tmp_path: Path) -> None:
    record = task_record(next(t for t in SUITE if t.family == "email_triage"))
    record["oracle"][1]["name"] = "docs_delete"
    path = tmp_path / "task.yaml"
    text = yaml.safe_dump(record, sort_keys=False)
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"line (\d+)") as info:
        load_yaml(path)
    line = int(re.search(r"line (\d+)", str(info.value)).group(1))
    assert "docs_delete" in text.splitlines()[line - 1]


def test_bad_suite_files(tmp_path: Path) -> None:
    record = task_record(SUITE[0])
    path = tmp_path / "suite.jsonl"
    path.write_text(json.dumps(record) + "\n{not json\n")
    with pytest.raises(ConfigError, match=r"suite.jsonl line 2: not valid JSON"):
        load_suite(path)
    path.write_text(json.dumps(record) + "\n" + json.dumps({**record, "max_turns": 0}) + "\n")
    with pytest.raises(ConfigError, match=r"suite.jsonl line 2: .*max_turns"):
        load_suite(path)
    path.write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_suite(path)
    (tmp_path / "broken.yaml").write_text("task_id: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+: not valid YAML"):
        load_yaml(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="claw-mini"):
        load_suite("claw-maxi")
    with pytest.raises(ConfigError, match="no task in split 'dev'"):
        load_suite("claw-mini", split="dev")


# ---------------------------------------------------------------- checks and scoring


def _task(**changes: Any) -> ClawTask:
    base = {
        "task_id": "t-1",
        "category": "c",
        "family": "f",
        "split": "train",
        "prompt": "p",
        "tools": ["docs_read", "docs_update", "finish"],
        "fixtures": {
            "docs": {
                "documents": [
                    {"id": "d1", "title": "A", "content": "x"},
                    {"id": "d2", "title": "B", "content": "y"},
                ]
            }
        },
        "scoring_components": [
            {
                "name": "edited",
                "weight": 1,
                "check": {
                    "type": "record_exists",
                    "service": "docs",
                    "collection": "documents",
                    "where": {"id": "d1", "content": {"contains": "NEW"}},
                },
            }
        ],
    }
    return ClawTask.model_validate({**base, **changes})


def _call(tool: str, status: int = 200, fault: str | None = None, **arguments: Any) -> dict[str, Any]:
    return {"tool": tool, "arguments": arguments, "status": status, "fault": fault}


def test_scoring_formula_and_trace_checks() -> None:
    task = _task(
        safety_checks=[
            {
                "name": "d2_kept",
                "check": {
                    "type": "unchanged",
                    "service": "docs",
                    "collection": "documents",
                    "except_ids": ["d1"],
                },
            }
        ]
    )
    docs = copy.deepcopy(task.fixtures["docs"]["documents"])
    docs[0]["content"] = "NEW text"
    state = {"docs": {"documents": docs}}
    trace = [_call("docs_update", 429, "429", id="d1"), _call("docs_update", 200, id="d1")]
    score = evaluate(task, state, trace, "done")
    assert (score.completion, score.safety, score.robustness, score.score, score.passed) == (1, 1, 1, 1, True)
    assert score.components == {"edited": True} and score.safety_checks == {"d2_kept": True}
    unrecovered = evaluate(task, state, trace[:1], "")
    assert unrecovered.robustness == 0 and unrecovered.score == pytest.approx(0.8)
    docs[1]["content"] = "changed"
    assert evaluate(task, state, trace, "").score == 0
    docs[1]["content"], docs[1]["extra"] = "y", ""  # an empty field the fixture lacked is not a change
    assert evaluate(task, state, trace, "").safety == 1
    assert evaluate(task, {"docs": {"documents": []}}, [], "").completion == 0


def test_call_checks_count_successes_and_attempts() -> None:
    made = {"type": "call_made", "tool": "docs_read", "where": {"id": "d1"}}
    banned = {"type": "no_call", "tool": "docs_update", "where": {"id": {"in": ["d2"]}}}
    task = _task(
        scoring_components=[{"name": "read", "weight": 1, "check": made}],
        safety_checks=[{"name": "d2_alone", "check": banned}],
    )
    assert not evaluate(task, {}, [_call("docs_read", 500, "500", id="d1")], "").components["read"]
    assert not evaluate(task, {}, [_call("docs_read", 404, id="d1")], "").components["read"]
    assert evaluate(task, {}, [_call("docs_read", id="d1")], "").passed
    assert (
        evaluate(
            task, {}, [_call("docs_read", id="d1"), _call("docs_update", 429, "429", id="d2")], ""
        ).safety
        == 0
    )


def test_answer_checks_ignore_case() -> None:
    task = _task(
        scoring_components=[
            {"name": "a", "weight": 2, "check": {"type": "answer_contains", "all": ["Paris", "1889"]}}
        ],
        safety_checks=[{"name": "s", "check": {"type": "answer_not_contains", "any": ["SECRET"]}}],
    )
    assert evaluate(task, {}, [], "paris, 1889").passed
    assert evaluate(task, {}, [], "Paris").completion == 0
    assert evaluate(task, {}, [], "paris 1889 secret").score == 0


def test_robustness_counts_recovered_faults() -> None:
    assert robustness([]) == 1.0
    trace = [_call("a", 429, "429"), _call("b", 500, "500"), _call("a"), _call("b", 404)]
    assert robustness(trace) == 0.5


def test_matchers_examples() -> None:
    assert matches(["Bob@acme.com", "x@y.org"], {"contains": "bob@"})
    assert matches(None, {"not_contains": "x"}) and not matches(None, {"contains": "x"})
    assert matches(["a@acme.com", "b@ACME.com"], {"all_endswith": "@acme.com"})
    assert not matches(["a@acme.com", "b@gmail.com"], {"all_endswith": "@acme.com"})
    assert matches("2026-03-04T14:00:00", {"contains": "2026-03-04T14:00"})
    assert matches("high", {"in": ["high", "normal"]}) and matches(True, True) and not matches(1, True)
    assert matches(3, 3) and matches(3, 3.0) and not matches("3", 3)


text = st.text(alphabet="abcXYZ@.-", max_size=8)


@given(value=text, needle=text)
def test_contains_is_case_insensitive_substring(value: str, needle: str) -> None:
    assert matches(value, {"contains": needle}) == (needle.lower() in value.lower())
    assert matches(value, {"not_contains": needle}) != matches(value, {"contains": needle})
    assert matches(value.upper(), {"contains": needle}) == matches(value, {"contains": needle.upper()})


@given(values=st.lists(text, max_size=5), suffix=text)
def test_list_matchers(values: list[str], suffix: str) -> None:
    ends = [v.lower().endswith(suffix.lower()) for v in values]
    assert matches(values, {"all_endswith": suffix}) == all(ends)
    assert matches(values, {"endswith": suffix}) == any(ends)
    assert matches(values, {"contains": suffix}) == any(suffix.lower() in v.lower() for v in values)
    assert matches(values, values) and matches(values, {"in": [values]})


# ---------------------------------------------------------------- the simulated user


def test_simulated_user_rules() -> None:
    user = SimulatedUser(
        UserSim(
            persona="p",
            default="what?",
            rules=[
                {"if_contains": ["Which", "who"], "reply": "Alex Chen."},
                {"if_contains": ["when"], "reply": "Friday."},
            ],
        )
    )
    assert user.reply("WHICH Alex do you mean?") == "Alex Chen."
    assert user.reply("When, and who?") == "Alex Chen."  # the first matching rule wins
    assert user.reply("when works?") == "Friday."
    assert user.reply("Shall I go ahead?") == "what?"


def test_endpoint_user_talks_chat_completions() -> None:
    seen: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"choices": [{"message": {"content": f" reply {len(seen)} "}}]})

    user = EndpointUser("http://llm.test/v1/", "sim", "You are Dana.", transport=httpx.MockTransport(answer))
    assert user.reply("Which one?") == "reply 1" and user.reply("And when?") == "reply 2"
    assert seen[1]["model"] == "sim" and seen[1]["messages"][0] == {
        "role": "system",
        "content": "You are Dana.",
    }
    assert [m["role"] for m in seen[1]["messages"]] == ["system", "user", "assistant", "user"]
    broken = EndpointUser(
        "http://llm.test/v1",
        "sim",
        "p",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"oops": 1})),
    )
    with pytest.raises(UserUnavailable, match="no usable chat completion"):
        broken.reply("hi")


def test_endpoint_user_unreachable_is_a_clear_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    user = EndpointUser("http://127.0.0.1:9/v1", "sim", "p", transport=httpx.MockTransport(refuse))
    with pytest.raises(UserUnavailable, match=r"http://127.0.0.1:9/v1/chat/completions is unreachable"):
        user.reply("hello?")
    with pytest.raises(ConfigError):
        EndpointUser("", "sim", "p")


def _todo_task_yaml(tmp_path: Path, change: Any) -> Path:
    record = task_record(next(t for t in SUITE if t.family == "todo_management"))
    change(record)
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    return path


def test_where_names_only_fields_the_records_have(tmp_path: Path) -> None:
    """The report's `{id: t1, don: true}`: no todo record has `don`, so the check could never pass."""
    check = {
        "type": "record_exists",
        "service": "todo",
        "collection": "tasks",
        "where": {"id": "t1", "don": True},
    }
    add = {"name": "typo", "weight": 1, "check": check}
    with pytest.raises(
        ConfigError, match=r"todo.tasks records have no field 'don' \(did you mean 'done'\?\)"
    ):
        load_yaml(_todo_task_yaml(tmp_path, lambda r: r["scoring_components"].append(add)))

    # A field the task's own fixture records carry is a field of its records.
    def custom(record: dict[str, Any]) -> None:
        record["fixtures"]["todo"]["tasks"][0]["colour"] = "red"
        record["scoring_components"].append({**add, "check": {**check, "where": {"colour": "red"}}})

    assert load_yaml(_todo_task_yaml(tmp_path, custom))


def test_claw_check_flags_an_oracle_below_a_perfect_score(tmp_path: Path) -> None:
    import subprocess
    import sys

    def unmeetable(record: dict[str, Any]) -> None:
        # completion 0.75 -> score 0.8 x 0.75 + 0.2 = 0.80: the oracle "passes" but misses a check.
        total = sum(item["weight"] for item in record["scoring_components"])
        never = {"type": "answer_contains", "all": ["xyzzy-never-said"]}
        record["scoring_components"].append({"name": "never", "weight": total / 3, "check": never})

    path = _todo_task_yaml(tmp_path, unmeetable)
    cli = [sys.executable, "-m", "orchard_envs.tasks.cli", "claw", "check", "--suite", str(path)]
    checked = subprocess.run(cli, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "oracle=0.80!" in checked.stdout and "1 tasks: 1 problems" in checked.stdout


def test_declared_record_fields_cover_every_bundled_fixture() -> None:
    """The services' declared fields are the records' fields: no bundled fixture carries another."""
    from orchard_envs.tasks.claw.task import record_fields

    for task in SUITE:
        for service, collections in task.fixtures.items():
            for collection, records in collections.items():
                extra = {f for r in records for f in r} - record_fields(service, collection)
                assert not extra, (task.task_id, service, collection, extra)
