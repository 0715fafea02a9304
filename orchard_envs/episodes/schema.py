"""One record per episode, in the shape evaluation, SFT and RL all read without conversion.

An `Episode` is the OpenAI chat transcript (`messages`, `tools`) plus `metadata` (who ran what, how it ended,
the reward) and `turns` (the exact tokens and logprobs of each assistant message, for RL).

The stored row (`Episode.to_row()`) is flat: `schema_version`, `messages`, `tools`, `turns`, then every fixed
metadata field as its own column (`reward`, `status`, `suite`, ... so filters and SQL need no unpacking), the
dict-valued metadata fields (`sampling`, `reward_breakdown`, `tokens`, `timings`, `versions`) and
`metadata_extra` (env-specific keys).

Column types, decided by loading real rows with `datasets` 5.2 / pyarrow 26 (see tests/test_episodes.py):

- Free-form JSON can't be an Arrow struct. Tool schemas differ per env (`"default": 3` in one,
  `"default": "x"` in another), messages differ per role (`tool_calls`, `tool_call_id`, content parts,
  `reasoning_content`), and `Dataset.from_list` and `pa.Table.from_pylist` reject such rows ("Could not
  convert 'x' ... to int64"). Where they don't fail, struct inference pads every message with the union of
  all keys (`tool_calls: None` on user messages), so rows don't round-trip.
- So each message, each tool and each dict-valued metadata field is one JSON value: Parquet's JSON logical
  type (Arrow `arrow.json`, a string underneath), and `datasets.Json()` in a `Dataset`. `messages` and
  `tools` stay list columns (`list<json>` / `List(Json())`), which `datasets` decodes back to the same dicts,
  so a trainer gets `example["messages"]` and `example["tools"]` as OpenAI lists, as TRL's
  `apply_chat_template(messages, tools=...)` expects. No duplicate `tools_json` column is needed.
  Raw `datasets.load_dataset("parquet", ...)` on our Parquet infers `List(Json())` from the logical type.
  (`datasets` needs >= 4.7 for `Json`; its decoder, pandas' ujson, keeps ~12 significant digits of floats
  inside JSON values, and its encoder 10 decimals, so `store` hands it JSON text it keeps verbatim.)
- `turns` has a fixed shape, so it is a plain struct list (token ids int64, logprobs float64), and the
  scalar metadata fields are plain typed columns.
- In JSONL the same row is native JSON (readable, `jq`-able, the OpenAI fine-tuning shape).

Values must survive every one of those readers, so validation rejects what one of them would alter: NaN
and infinity (not JSON), integers beyond 64 bits (Arrow and `datasets`' JSON decoder), lone surrogates (not
UTF-8), non-string keys and tuples (JSON would silently turn them into strings and lists).
"""

from __future__ import annotations

import functools
import json
import math
import platform
import uuid
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1
ROLES = ("system", "user", "assistant", "tool")
# `step_limit`: the env truncated the episode (and graded it); `turn_limit`: the harness cut it after its
# `max_turns` model replies, before the env ended it (not graded, so `resolved` is None).
STATUSES = ("submitted", "step_limit", "turn_limit", "format_errors", "context_limit", "error", "infra_error")
Status = Literal[
    "submitted", "step_limit", "turn_limit", "format_errors", "context_limit", "error", "infra_error"
]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Row layout: metadata fields stored as typed scalar columns, and those stored as one JSON value each.
SCALAR_COLUMNS = (
    "episode_id", "env_id", "suite", "task_id", "split", "harness", "agent", "model", "seed",
    "status", "reward", "resolved", "steps", "format_errors", "created_at",
)
JSON_COLUMNS = ("reward_breakdown", "sampling", "tokens", "timings", "versions", "metadata_extra")
COLUMNS = ("schema_version", "messages", "tools", "turns", *SCALAR_COLUMNS, *JSON_COLUMNS)


@functools.cache
def _versions() -> tuple[tuple[str, str], ...]:
    from orchard_envs import __version__

    try:
        gymnasium = importlib_metadata.version("gymnasium")
    except importlib_metadata.PackageNotFoundError:
        gymnasium = "unknown"
    return (("orchard_envs", __version__), ("gymnasium", gymnasium), ("python", platform.python_version()))


def current_versions() -> dict[str, str]:
    """The versions that shape an episode (env code, Gymnasium, Python), recorded so results can be traced."""
    return dict(_versions())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def json_problem(value: Any, where: str) -> str | None:
    """Why `value` would not come back unchanged from JSON, Parquet and `datasets`; None if it would."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return f"{at}: integer {item} does not fit in 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{at}: {item} is not a finite number (JSON has no NaN or Infinity)"
        elif isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return f"{at}: text is not valid Unicode (a lone surrogate)"
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{at}: key {key!r} is not a string"
                stack.append((child, f"{at}.{key}"))
        else:
            kind = type(item).__name__
            return f"{at}: {kind} is not JSON (use dict, list, str, int, float, bool or None)"
    return None


def _check_json(value: Any, where: str) -> None:
    problem = json_problem(value, where)
    if problem:
        raise ValueError(problem)


def _is_content(content: Any) -> bool:
    """A message's content: text, or a list of OpenAI content parts (`{"type": ..., ...}`)."""
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("type"), str) for part in content
    )


def _check_tool_calls(i: int, calls: Any) -> list[str]:
    """Validate an assistant message's tool_calls; return their ids."""
    where = f"messages[{i}].tool_calls"
    if not isinstance(calls, list):
        raise ValueError(f"{where} must be a list, got {type(calls).__name__}")
    ids: list[str] = []
    for j, call in enumerate(calls):
        at = f"{where}[{j}]"
        if not isinstance(call, dict):
            raise ValueError(f"{at} must be an object, got {type(call).__name__}")
        call_id, function = call.get("id"), call.get("function")
        if not isinstance(call_id, str) or not call_id:
            raise ValueError(f"{at}.id must be a non-empty string")
        if call_id in ids:
            raise ValueError(f"{at}.id {call_id!r} repeats an id in the same message")
        if call.get("type") != "function":
            raise ValueError(f"{at}.type must be 'function', got {call.get('type')!r}")
        if not isinstance(function, dict):
            raise ValueError(f"{at}.function must be an object with name and arguments")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError(f"{at}.function.name must be a non-empty string")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            kind = type(arguments).__name__
            raise ValueError(f"{at}.function.arguments must be a JSON string (json.dumps it), got {kind}")
        ids.append(call_id)
    return ids


def check_messages(messages: list[dict]) -> None:
    """Catch the transcript mistakes that break chat templates and trainers, naming the message index."""
    pending: set[str] = set()  # tool_call ids of the latest assistant message not yet answered
    answered: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]: role {role!r} is not one of {', '.join(ROLES)}")
        content = message.get("content")
        if role == "assistant":
            calls = message.get("tool_calls")
            ids = _check_tool_calls(i, calls) if calls is not None else []
            if content is not None and not _is_content(content):
                raise ValueError(f"messages[{i}] (assistant): content must be text, content parts or null")
            if content is None and not ids:
                raise ValueError(f"messages[{i}] (assistant): has neither content nor tool_calls")
            pending, answered = set(ids), set()
            continue
        if not _is_content(content):
            raise ValueError(f"messages[{i}] ({role}): content must be a string or a list of content parts")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise ValueError(f"messages[{i}] (tool): tool_call_id must be a string")
            if call_id in answered:
                raise ValueError(f"messages[{i}] (tool): tool_call_id {call_id!r} was already answered")
            if call_id not in pending:
                raise ValueError(
                    f"messages[{i}] (tool): tool_call_id {call_id!r} answers no tool_call of the latest "
                    "assistant message"
                )
            pending.discard(call_id)
            answered.add(call_id)
    _check_json(messages, "messages")


def check_tools(tools: list[dict]) -> None:
    """Tools are OpenAI function schemas with unique names."""
    names: set[str] = set()
    for i, tool in enumerate(tools):
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise ValueError(f"tools[{i}]: expected {{'type': 'function', 'function': {{...}}}}")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"tools[{i}].function.name must be a non-empty string")
        if name in names:
            raise ValueError(f"tools[{i}]: tool name {name!r} appears twice")
        if not isinstance(function.get("parameters", {}), dict):
            raise ValueError(f"tools[{i}].function.parameters must be a JSON schema object")
        names.add(name)
    _check_json(tools, "tools")


class TurnTokens(BaseModel):
    """Token-in-token-out record of one assistant message, so RL trains on exactly what was sampled."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    message_index: int = Field(ge=0)
    prompt_token_ids: list[int] | None = None
    token_ids: list[int]
    logprobs: list[float] | None = None
    finish_reason: str | None = None
    # Do these prompt ids start with the previous turn's prompt + sampled ids? False where the chat template
    # rewrote history or the harness trimmed context: concatenating turns is then not what the model saw.
    extends_previous: bool | None = None

    @model_validator(mode="after")
    def _lengths(self) -> TurnTokens:
        for name in ("prompt_token_ids", "token_ids"):
            ids = getattr(self, name) or []
            if ids and (min(ids) < 0 or max(ids) > INT64_MAX):
                raise ValueError(f"{name} must be non-negative 64-bit token ids")
        if self.logprobs is not None and len(self.logprobs) != len(self.token_ids):
            raise ValueError(
                f"logprobs has {len(self.logprobs)} entries but token_ids has {len(self.token_ids)}"
            )
        return self


class EpisodeMetadata(BaseModel):
    """Who ran what and how it ended; env-specific keys are allowed and kept (in `metadata_extra`)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    episode_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1)
    env_id: str
    suite: str
    task_id: str
    split: str | None = None
    harness: str
    agent: str
    model: str | None = None
    sampling: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    reward: float
    reward_breakdown: dict[str, float] = Field(default_factory=dict)
    resolved: bool | None = None
    status: Status
    steps: int = Field(default=0, ge=0, le=INT64_MAX)
    format_errors: int = Field(default=0, ge=0, le=INT64_MAX)
    tokens: dict[str, int] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=current_versions)
    created_at: str = Field(default_factory=_now)

    @field_validator("created_at")
    @classmethod
    def _iso_utc(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"created_at {value!r} is not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise ValueError(f"created_at {value!r} has no timezone (use UTC, e.g. ...Z)")
        return value

    @model_validator(mode="after")
    def _json_values(self) -> EpisodeMetadata:
        _check_json(self.sampling, "sampling")
        _check_json(self.tokens, "tokens")
        for key, value in (self.model_extra or {}).items():
            _check_json(value, key)
        return self


class Episode(BaseModel):
    """One episode: the chat transcript, the tools offered, what happened, and (optionally) its tokens."""

    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    metadata: EpisodeMetadata
    turns: list[TurnTokens] = Field(default_factory=list)

    @field_validator("messages")
    @classmethod
    def _messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_messages(messages)
        return messages

    @field_validator("tools")
    @classmethod
    def _tools(cls, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
        check_tools(tools)
        return tools

    @model_validator(mode="after")
    def _turns_point_at_assistant_messages(self) -> Episode:
        previous = -1
        for k, turn in enumerate(self.turns):
            index = turn.message_index
            if index >= len(self.messages) or self.messages[index].get("role") != "assistant":
                raise ValueError(f"turns[{k}].message_index {index} is not an assistant message")
            if index <= previous:
                raise ValueError(f"turns[{k}].message_index {index} is not after the previous turn's")
            previous = index
        return self

    def to_row(self) -> dict[str, Any]:
        """The flat, JSON-able row stored in JSONL and Parquet (layout in the module docstring)."""
        data = self.model_dump()
        meta = data["metadata"]
        extra = {key: meta.pop(key) for key in list(self.metadata.model_extra or {})}
        row: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "messages": data["messages"],
            "tools": data["tools"],
            "turns": data["turns"],
        }
        row.update((name, meta[name]) for name in SCALAR_COLUMNS)
        row.update((name, meta[name]) for name in JSON_COLUMNS[:-1])
        row["metadata_extra"] = extra
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Episode:
        """Rebuild from a row of JSONL, Parquet or `datasets` (JSON columns may arrive as JSON text)."""
        if not isinstance(row, dict):
            raise ValueError(f"a row must be a JSON object, got {type(row).__name__}")
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"unknown column(s): {', '.join(unknown)}")
        version = row.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {version!r} is not supported (reads {SCHEMA_VERSION})")
        data: dict[str, Any] = {}
        for name in ("messages", "tools"):
            if name in row:
                value = row[name]
                if isinstance(value, list):
                    value = [_from_json_text(item, name) for item in value]
                data[name] = value
        if "turns" in row:
            data["turns"] = row["turns"]
        meta = {name: row[name] for name in SCALAR_COLUMNS if name in row}
        meta.update((name, _from_json_text(row[name], name)) for name in JSON_COLUMNS[:-1] if name in row)
        extra = _from_json_text(row.get("metadata_extra", {}), "metadata_extra")
        if not isinstance(extra, dict):
            raise ValueError("metadata_extra must be a JSON object")
        clash = sorted(set(extra) & set(EpisodeMetadata.model_fields))
        if clash:
            raise ValueError(f"metadata_extra repeats field(s) with their own column: {', '.join(clash)}")
        data["metadata"] = {**extra, **meta}
        return cls.model_validate(data)


def _from_json_text(value: Any, column: str) -> Any:
    """Parquet hands JSON-typed values over as text; a message, a tool or a dict is never a plain string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{column}: not valid JSON text ({exc})") from None


def describe_error(exc: Exception) -> str:
    """One line saying what is wrong, for reports of skipped rows."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_url=False):
            loc = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {message}" if loc and not message.startswith(loc) else message)
        return "; ".join(parts)
    return str(exc)
