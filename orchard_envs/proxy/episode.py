"""An episode's recorded calls as one transcript: messages as the harness saw them, and per-turn tokens.

Call k's request is compared with the transcript so far: where it extends it (the usual case: the
harness appends its observations and asks again), only the new messages and the reply are added. Where it
does not (the harness rewrote or trimmed its history), the request's messages are added whole after a
break, and the turn's `extends_previous` is False, so trainers split there, as they do for our harnesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchard_envs.episodes import TurnTokens
from orchard_envs.proxy.records import CallRecord


@dataclass
class Transcript:
    """What the calls add up to; `rewrites` counts the calls whose history did not extend the last."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    turns: list[TurnTokens] = field(default_factory=list)
    rewrites: int = 0
    answered: int = 0  # calls with a reply
    tokens: dict[str, int] = field(default_factory=lambda: {"prompt": 0, "completion": 0})


def _clean(message: dict[str, Any]) -> dict[str, Any]:
    """The message's chat fields only (harnesses attach their own extras, e.g. mini-swe-agent's `extra`)."""
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    out = {k: message[k] for k in keep if k in message and message[k] is not None}
    if out.get("role") == "assistant":
        out.setdefault("content", None)
    if out.get("role") == "developer":
        out["role"] = "system"
    return out


def _extends_ids(previous: TurnTokens | None, record: CallRecord) -> bool | None:
    if previous is None or previous.prompt_token_ids is None or record.prompt_token_ids is None:
        return None
    head = previous.prompt_token_ids + previous.token_ids
    return record.prompt_token_ids[: len(head)] == head


def build_transcript(calls: list[CallRecord]) -> Transcript:
    """The calls (those with a reply) folded into one transcript; see the module docstring."""
    out = Transcript()
    for record in calls:
        if record.reply is None:
            continue
        request = [_clean(m) for m in record.messages]
        extends = request[: len(out.messages)] == out.messages
        if extends:
            out.messages.extend(request[len(out.messages) :])
        else:
            out.rewrites += 1
            out.messages.extend(request)
        out.messages.append(_clean(record.reply))
        out.answered += 1
        out.tools = record.tools or out.tools
        out.tokens["prompt"] += record.usage.get("prompt_tokens", 0)
        out.tokens["completion"] += record.usage.get("completion_tokens", 0)
        if record.token_ids is not None:
            by_ids = _extends_ids(out.turns[-1] if out.turns else None, record)
            out.turns.append(
                TurnTokens(
                    message_index=len(out.messages) - 1,
                    prompt_token_ids=record.prompt_token_ids,
                    token_ids=record.token_ids,
                    logprobs=record.logprobs,
                    finish_reason=record.finish_reason,
                    extends_previous=False if not extends and out.turns else by_ids,
                )
            )
    return out
