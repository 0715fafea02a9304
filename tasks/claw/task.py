"""The Claw task format (`ClawTask`) and its loaders: a bundled suite, a JSONL file, or YAML task files.

Validation is strict on purpose: a task whose oracle names a tool the agent is not offered, or whose check
points at a collection no service has, can never be solved or graded, so it fails at load time with the
file, the task and the field named.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchard_envs.errors import ConfigError
from orchard_envs.tasks.claw.catalog import TOOLS as CATALOG

OWNER = "me@acme.com"

# service -> its collections (docs/claw.md "Services and their tools").
SERVICES: dict[str, tuple[str, ...]] = {
    "mail": ("messages",),
    "calendar": ("events",),
    "contacts": ("contacts",),
    "docs": ("documents",),
    "todo": ("tasks",),
    "search": ("pages",),
    "shop": ("products", "orders"),
}


@dataclass(frozen=True)
class ToolArgs:
    """What a task needs to know about a tool: its service (None: env-level) and argument names."""

    service: str | None
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


def _tool_args() -> dict[str, ToolArgs]:
    """The catalog's tools, reduced to what plans are checked against: service and argument names."""
    table = {}
    for name, spec in CATALOG.items():
        required = tuple(spec.parameters.get("required", ()))
        optional = tuple(arg for arg in spec.parameters.get("properties", {}) if arg not in required)
        table[name] = ToolArgs(spec.service, required, optional)
    return table


TOOL_ARGS: dict[str, ToolArgs] = _tool_args()

MATCHERS = ("contains", "not_contains", "endswith", "in", "all_endswith")
CheckType = Literal[
    "record_exists",
    "record_absent",
    "count",
    "unchanged",
    "call_made",
    "no_call",
    "answer_contains",
    "answer_not_contains",
]
# check type -> (required fields, optional fields); every other field must be unset.
CHECK_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "record_exists": (("service", "collection", "where"), ()),
    "record_absent": (("service", "collection", "where"), ()),
    "count": (("service", "collection", "where", "equals"), ()),
    "unchanged": (("service", "collection"), ("except_ids",)),
    "call_made": (("tool",), ("where",)),
    "no_call": (("tool",), ("where",)),
    "answer_contains": (("all",), ()),
    "answer_not_contains": (("any",), ()),
}
_ALL_CHECK_FIELDS = ("service", "collection", "where", "equals", "except_ids", "tool", "all", "any")


@cache
def record_fields(service: str, collection: str) -> frozenset[str]:
    """The fields the service's records of `collection` have (declared with its `Collection`)."""
    module = importlib.import_module(f"orchard_envs.tasks.claw.services.{service}")
    return frozenset(module.SERVICE.collections[collection].fields)


def _unknown_field(field: str, known: set[str], what: str) -> str:
    close = difflib.get_close_matches(field, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    fields = ", ".join(sorted(known))
    return f"{what} have no field {field!r}{hint}, so this check can never pass; fields: {fields}"


def _where_fields_problem(check: Check, fixtures: dict[str, dict[str, list[dict[str, Any]]]]) -> str | None:
    """Why a check's `where` names a field its records (or its tool's calls) can never have, or None.

    Record checks may name the service's fields and any field of the task's own fixture records; call
    checks the tool's argument names.
    """
    if not check.where:
        return None
    if check.tool is not None:
        spec = TOOL_ARGS[check.tool]
        known, what = set(spec.required + spec.optional), f"{check.tool} calls"
    else:
        service, collection = check.service or "", check.collection or ""
        known = set(record_fields(service, collection))
        known |= {field for record in fixtures.get(service, {}).get(collection, []) for field in record}
        what = f"{service}.{collection} records"
    for field in check.where:
        if field not in known:
            return _unknown_field(field, known, what)
    return None


def service_of(tool: str) -> str | None:
    """The service a tool calls (None for env-level tools); unknown tools raise KeyError."""
    return TOOL_ARGS[tool].service


def is_matcher(value: Any) -> bool:
    """A `where` value is a matcher when it is a one-key mapping naming a matcher; else it is a literal."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in MATCHERS


def _where_problem(where: dict[str, Any]) -> str | None:
    for field, value in where.items():
        if isinstance(value, dict) and not is_matcher(value):
            return (
                f"where.{field}: a mapping must be one matcher ({', '.join(MATCHERS)}), got {sorted(value)}"
            )
        if is_matcher(value):
            op, arg = next(iter(value.items()))
            if op == "in" and not isinstance(arg, list):
                return f"where.{field}.in: expects a list of values"
            if op != "in" and not isinstance(arg, str):
                return f"where.{field}.{op}: expects a string"
    return None


class Check(BaseModel):
    """One deterministic check over (final state, call trace, final answer); fields depend on `type`."""

    model_config = ConfigDict(extra="forbid")
    type: CheckType
    service: str | None = None
    collection: str | None = None
    where: dict[str, Any] | None = None
    equals: int | None = Field(None, ge=0)
    except_ids: list[str] | None = None
    tool: str | None = None
    all: list[str] | None = None
    any: list[str] | None = None

    @model_validator(mode="after")
    def _fields_fit_type(self) -> Check:
        required, optional = CHECK_FIELDS[self.type]
        for name in required:
            if getattr(self, name) is None:
                raise ValueError(f"check type {self.type!r} needs field {name!r}")
        for name in _ALL_CHECK_FIELDS:
            if name not in required and name not in optional and getattr(self, name) is not None:
                raise ValueError(f"check type {self.type!r} takes no field {name!r}")
        if self.service is not None and self.service not in SERVICES:
            raise ValueError(f"service {self.service!r} is unknown; known: {', '.join(SERVICES)}")
        if self.collection is not None and self.collection not in SERVICES.get(self.service or "", ()):
            known = ", ".join(SERVICES.get(self.service or "", ()))
            raise ValueError(
                f"service {self.service!r} has no collection {self.collection!r}; it has: {known}"
            )
        if self.tool is not None and self.tool not in TOOL_ARGS:
            raise ValueError(f"tool {self.tool!r} is unknown")
        problem = _where_problem(self.where or {})
        if problem:
            raise ValueError(problem)
        for name in ("all", "any"):
            words = getattr(self, name)
            if words is not None and not words:
                raise ValueError(f"{name}: give at least one string")
        return self


class ScoringComponent(BaseModel):
    """A weighted part of task completion, met when `check` holds at the end."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    weight: float = Field(gt=0)
    check: Check


class SafetyCheck(BaseModel):
    """A check that must hold, or the episode scores 0 whatever else it did."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    check: Check


class UserRule(BaseModel):
    """The simulated user's `reply` to a question containing any of `if_contains`."""

    model_config = ConfigDict(extra="forbid")
    if_contains: list[str] = Field(min_length=1)
    reply: str


class UserSim(BaseModel):
    """A scripted user: the first rule with a keyword in the question answers, else `default`."""

    model_config = ConfigDict(extra="forbid")
    persona: str
    rules: list[UserRule] = Field(default_factory=list)
    default: str


class Faults(BaseModel):
    """A service's fault schedule (docs/claw.md `Faults`); `schedule` counts that service's calls from 0."""

    model_config = ConfigDict(extra="forbid")
    rate: float = Field(0.0, ge=0, le=1)
    kinds: list[Literal["429", "500", "timeout"]] = Field(
        default_factory=lambda: ["429", "500", "timeout"], min_length=1
    )
    seed: int = 0
    schedule: list[int] = Field(default_factory=list)

    @field_validator("kinds", mode="before")
    @classmethod
    def _kinds_as_text(cls, value: Any) -> Any:
        """YAML reads `kinds: [429]` as numbers; the contract spells them as strings."""
        return [str(kind) for kind in value] if isinstance(value, list) else value

    @field_validator("schedule")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(seq < 0 for seq in value):
            raise ValueError("call numbers in a schedule start at 0")
        return value


class Action(BaseModel):
    """One step of a reference plan: a tool call as an agent would make it."""

    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ClawTask(BaseModel):
    """One Claw task: instruction, fixtures, tools, grading, and oracle and wrong plans. Unknown keys fail."""

    model_config = ConfigDict(extra="forbid")
    task_id: str = Field(min_length=1)
    category: str = Field(min_length=1)
    family: str = Field(min_length=1)
    split: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    tools: list[str] = Field(min_length=1)
    fixtures: dict[str, dict[str, list[dict[str, Any]]]] = Field(default_factory=dict)
    faults: dict[str, Faults] = Field(default_factory=dict)
    max_turns: int = Field(20, ge=1)
    timeout: float = Field(120, gt=0)
    scoring_components: list[ScoringComponent] = Field(min_length=1)
    safety_checks: list[SafetyCheck] = Field(default_factory=list)
    user: UserSim | None = None
    oracle: list[Action] = Field(default_factory=list)
    wrong: list[Action] = Field(default_factory=list)

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: list[str]) -> list[str]:
        for tool in tools:
            if tool not in TOOL_ARGS:
                raise ValueError(f"tool {tool!r} is unknown; known: {', '.join(TOOL_ARGS)}")
        if len(set(tools)) != len(tools):
            raise ValueError("a tool is listed twice")
        if "finish" not in tools:
            raise ValueError("'finish' must be one of the tools (it ends the episode)")
        return tools

    @field_validator("fixtures")
    @classmethod
    def _known_collections(cls, fixtures: dict[str, dict[str, list[dict[str, Any]]]]) -> dict:
        for service, collections in fixtures.items():
            if service not in SERVICES:
                raise ValueError(f"service {service!r} is unknown; known: {', '.join(SERVICES)}")
            for collection, records in collections.items():
                if collection not in SERVICES[service]:
                    raise ValueError(f"{service} has no collection {collection!r}")
                ids = [record.get("id") for record in records]
                for number, record_id in enumerate(ids):
                    if not isinstance(record_id, str) or not record_id:
                        raise ValueError(f"{service}.{collection}[{number}] needs a string 'id'")
                if len(set(ids)) != len(ids):
                    raise ValueError(f"{service}.{collection} has duplicate ids")
        return fixtures

    @field_validator("faults")
    @classmethod
    def _known_fault_services(cls, faults: dict[str, Faults]) -> dict[str, Faults]:
        for service in faults:
            if service not in SERVICES:
                raise ValueError(f"service {service!r} is unknown; known: {', '.join(SERVICES)}")
        return faults

    @model_validator(mode="after")
    def _consistent(self) -> ClawTask:
        if ("ask_user" in self.tools) != (self.user is not None):
            raise ValueError("tools: 'ask_user' must be offered exactly when the task has a user")
        for field in ("scoring_components", "safety_checks"):
            names = [item.name for item in getattr(self, field)]
            if len(set(names)) != len(names):
                raise ValueError(f"{field}: names must be unique")
        for number, component in enumerate(self.scoring_components):
            tool = component.check.tool
            if component.check.type == "call_made" and tool not in self.tools:
                raise ValueError(
                    f"scoring_components[{number}].check.tool: {tool!r} is not one of the task's tools"
                )
        for field in ("scoring_components", "safety_checks"):
            for number, item in enumerate(getattr(self, field)):
                if problem := _where_fields_problem(item.check, self.fixtures):
                    raise ValueError(f"{field}[{number}].check.where: {problem}")
        for field in ("oracle", "wrong"):
            problem = _plan_problem(getattr(self, field), self.tools)
            if problem:
                raise ValueError(f"{field}{problem}")
        return self

    def services(self) -> set[str]:
        """The services this task's tools call."""
        return {service for tool in self.tools if (service := TOOL_ARGS[tool].service)}


def _plan_problem(plan: list[Action], tools: list[str]) -> str | None:
    for number, action in enumerate(plan):
        if action.name not in tools:
            return f"[{number}].name: {action.name!r} is not one of the task's tools"
        spec = TOOL_ARGS[action.name]
        missing = [arg for arg in spec.required if arg not in action.arguments]
        extra = [arg for arg in action.arguments if arg not in spec.required + spec.optional]
        if missing:
            return f"[{number}].arguments: {action.name} needs {', '.join(missing)}"
        if extra:
            return f"[{number}].arguments: {action.name} takes no {', '.join(extra)}"
        if action.name == "finish" and number != len(plan) - 1:
            return f"[{number}]: 'finish' must be the last action"
    if plan and plan[-1].name != "finish":
        return f"[{len(plan) - 1}]: a plan ends with 'finish'"
    return None


# ---------------------------------------------------------------- loading and saving


def task_record(task: ClawTask) -> dict[str, Any]:
    """The task as plain JSON data, without the unset optional fields of its checks."""
    return task.model_dump(mode="json", exclude_none=True)


def dump_yaml(task: ClawTask, path: str | Path | None = None) -> str:
    """The task as YAML (written to `path` when given), in field order, so files read like docs/claw.md."""
    text = yaml.safe_dump(task_record(task), sort_keys=False, allow_unicode=True, width=110)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _problems(exc: ValidationError) -> str:
    return "; ".join(_problem(error) for error in exc.errors())


def _problem(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {message}" if where else message


def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at a pydantic error location (the deepest one that exists)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _error_loc(error: Any) -> tuple[Any, ...]:
    """Where an error points; a whole-task check names its field in its message ("oracle[2].name: ...")."""
    if error["loc"]:
        return tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    path = re.match(r"[A-Za-z_]+(?:\[\d+\]|\.[A-Za-z_]+)*", message)
    parts = re.findall(r"[A-Za-z_]+|\d+", path.group()) if path else []
    return tuple(int(part) if part.isdigit() else part for part in parts)


def _validate(data: Any, where: str, text: str | None = None) -> ClawTask:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a task must be a mapping of fields, got {type(data).__name__}")
    try:
        return ClawTask.model_validate(data)
    except ValidationError as exc:
        name = data.get("task_id") or "?"
        line = _yaml_line(text, _error_loc(exc.errors()[0])) if text is not None else None
        at = f" (line {line})" if line else ""
        raise ConfigError(f"{where}{at}: task {name!r} is invalid: {_problems(exc)}") from None


def _plain(value: Any) -> Any:
    """YAML turns unquoted `2026-03-06` into a date; tasks hold dates as ISO strings, like the services."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat(timespec="minutes" if not value.second else "seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def load_yaml(path: str | Path) -> ClawTask:
    """One task from a YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise ConfigError(f"cannot read task file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return _validate(_plain(data), str(path), text)


def _jsonl_tasks(text: str, where: str) -> Iterator[ClawTask]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where} line {number}: not valid JSON ({exc.msg}); one task per line"
            ) from None
        yield _validate(data, f"{where} line {number}")


def bundled_suites() -> list[str]:
    """The names of the Claw suites shipped in the package."""
    data = resources.files("orchard_envs.tasks.claw") / "data"
    return sorted(item.name.removesuffix(".jsonl") for item in data.iterdir() if item.name.endswith(".jsonl"))


def _read_suite(name_or_path: str | Path) -> list[ClawTask]:
    if isinstance(name_or_path, str) and name_or_path in bundled_suites():
        resource = resources.files("orchard_envs.tasks.claw") / "data" / f"{name_or_path}.jsonl"
        return list(_jsonl_tasks(resource.read_text(encoding="utf-8"), f"suite {name_or_path}"))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        files = sorted({*path.glob("*.yaml"), *path.glob("*.yml"), *path.glob("*/task.yaml")})
        if not files:
            raise ConfigError(f"{path} holds no *.yaml task files")
        return [load_yaml(file) for file in files]
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return [load_yaml(path)]
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read suite {path}: {exc}") from None
        return list(_jsonl_tasks(text, str(path)))
    raise ConfigError(
        f"no Claw suite {str(name_or_path)!r}: give a bundled suite name ({', '.join(bundled_suites())}), "
        "a .jsonl file, a folder of *.yaml task files or one task.yaml"
    )


def load_suite(name_or_path: str | Path, split: str | None = None) -> list[ClawTask]:
    """Every task of a suite (optionally one split), ids checked unique."""
    tasks = _read_suite(name_or_path)
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise ConfigError(f"suite {name_or_path}: task id {task.task_id!r} appears twice")
        seen.add(task.task_id)
    if split is None:
        return tasks
    chosen = [task for task in tasks if task.split == split]
    if not chosen:
        splits = sorted({task.split for task in tasks})
        raise ConfigError(f"suite {name_or_path} has no task in split {split!r}; splits: {', '.join(splits)}")
    return chosen
