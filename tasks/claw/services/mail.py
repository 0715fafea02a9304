"""The mail service: one mailbox (the owner's), searched, read, sent from, replied to and filed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from orchard_envs.tasks.claw.services.base import (
    OWNER,
    Body,
    Collection,
    Service,
    ServiceState,
    State,
    text_matches,
)

router = APIRouter()
SUMMARY_FIELDS = ("id", "from", "to", "subject", "date", "labels", "folder", "read")
SEARCH_FIELDS = ("from", "to", "cc", "subject", "body")


class SendBody(Body):
    """A new message."""
    to: list[str] = Field(min_length=1)
    subject: str
    body: str
    cc: list[str] = Field(default_factory=list)


class ReplyBody(Body):
    """The text of a reply; recipients and subject come from the original."""
    body: str


class MoveBody(Body):
    """The folder to move a message to."""
    folder: str = Field(min_length=1)


class LabelBody(Body):
    """Labels to add and remove."""
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


def summary(message: dict[str, Any]) -> dict[str, Any]:
    """A message without its body, as searches list it."""
    return {field: message.get(field) for field in SUMMARY_FIELDS}


def _same(a: Any, b: str | None) -> bool:
    return b is None or str(a or "").casefold() == b.casefold()


@router.get("/messages")
async def search(
    state: State, query: str | None = None, folder: str | None = None, label: str | None = None,
    unread_only: bool = False,
) -> list[dict[str, Any]]:
    """Summaries of messages matching every filter given."""
    found = [
        m for m in state.records("messages")
        if text_matches(query, m, SEARCH_FIELDS)
        and _same(m.get("folder"), folder)
        and (label is None or any(_same(x, label) for x in m.get("labels") or []))
        and not (unread_only and m.get("read"))
    ]
    found.sort(key=lambda m: (str(m.get("date") or ""), m["id"]), reverse=True)  # newest first
    return [summary(m) for m in found]


@router.get("/messages/{id}")
async def read(id: str, state: State) -> dict[str, Any]:
    """One message in full, marked read."""
    message = state.get("messages", id)
    message["read"] = True
    return message


def _outgoing(
    state: ServiceState, to: list[str], cc: list[str], subject: str, body: str, thread: str | None
) -> dict[str, Any]:
    message = state.insert("messages", {
        "folder": "sent", "from": OWNER, "to": to, "cc": cc, "subject": subject, "body": body,
        "labels": [], "date": state.now, "read": True, "thread_id": thread,
    })
    if thread is None:  # a new conversation: its thread is named after its first message
        message["thread_id"] = message["id"]
    return message


@router.post("/messages", status_code=201)
async def send(request: SendBody, state: State) -> dict[str, Any]:
    """Send a message (it lands in the sent folder)."""
    return _outgoing(state, request.to, request.cc, request.subject, request.body, None)


@router.post("/messages/{id}/reply", status_code=201)
async def reply(id: str, request: ReplyBody, state: State) -> dict[str, Any]:
    """Reply to the sender (to the recipients, for one's own message), in the same thread."""
    original = state.get("messages", id)
    sender = original.get("from") or ""
    # Replying to one's own message continues the conversation with its recipients, as mail clients do.
    to = list(original.get("to") or []) if sender.casefold() == OWNER else [sender]
    subject = str(original.get("subject") or "")
    if not subject.casefold().startswith("re:"):
        subject = f"Re: {subject}"
    return _outgoing(state, to, [], subject, request.body, original.get("thread_id") or original["id"])


@router.post("/messages/{id}/move")
async def move(id: str, request: MoveBody, state: State) -> dict[str, Any]:
    """Move a message to a folder."""
    message = state.get("messages", id)
    message["folder"] = request.folder
    return message


@router.post("/messages/{id}/labels")
async def label(id: str, request: LabelBody, state: State) -> dict[str, Any]:
    """Add and remove labels (compared case-insensitively)."""
    message = state.get("messages", id)
    removed = {x.casefold() for x in request.remove}
    labels = [x for x in message.get("labels") or [] if x.casefold() not in removed]
    for x in request.add:
        if x.casefold() not in {y.casefold() for y in labels}:
            labels.append(x)
    message["labels"] = labels
    return message


MESSAGES_FIELDS = (
    "id", "folder", "from", "to", "cc", "subject", "body", "labels", "date", "read", "thread_id",
)
SERVICE = Service("mail", {"messages": Collection("m", "message", MESSAGES_FIELDS)}, router)
