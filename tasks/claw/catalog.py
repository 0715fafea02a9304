"""The Claw tool catalog: what agents see (name, description, JSON schema) and how a call maps to HTTP.

One table serves both sides: the env hands `openai_tools(task.tools)` to the model and turns each tool call
into a request with `request_for`, so a tool's schema and its route cannot drift apart unnoticed (the
service tests compare this table with the services' own routes).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from orchard_envs.errors import unknown_name

PATH_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class ToolSpec:
    """One Claw tool: the service route it calls (none for env-level tools) and what the model reads."""
    name: str
    service: str | None  # None: an env-level tool (finish, ask_user), answered by the env itself
    method: str | None
    path: str | None  # a template: "/messages/{id}"
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments (an object, no extra properties)


class ArgumentError(ValueError):
    """A tool call's arguments cannot make a request (a path argument is missing or null, or the tool is
    env-level); the message says why, in a sentence fit for the agent."""


def _object(required: dict[str, dict[str, Any]], optional: dict[str, dict[str, Any]] | None = None) -> dict:
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


def _str(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _strs(description: str, min_items: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "description": description}
    if min_items:
        schema["minItems"] = min_items
    return schema


def _bool(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


TIME = "ISO 8601 date-time, e.g. 2026-03-02T09:00"
ID = {"message": _str("Message id, e.g. m3."), "event": _str("Event id, e.g. e2."),
      "contact": _str("Contact id, e.g. c4."), "document": _str("Document id, e.g. d1."),
      "task": _str("Task id, e.g. t5."), "page": _str("Page id from web_search results."),
      "order": _str("Order id, e.g. o1.")}
PRIORITY = {"type": "string", "enum": ["low", "normal", "high"], "description": "Task priority."}

_TABLE: list[tuple[str, str | None, str | None, str | None, str, dict[str, Any]]] = [
    ("mail_search", "mail", "GET", "/messages",
     "Search the mailbox; returns message summaries (newest first) without bodies.",
     _object({}, {"query": _str("Text to find in sender, recipients, subject or body (case-insensitive)."),
                  "folder": _str("Only this folder: inbox, sent, archive, trash or a custom folder."),
                  "label": _str("Only messages carrying this label."),
                  "unread_only": _bool("Only unread messages.")})),
    ("mail_read", "mail", "GET", "/messages/{id}",
     "Read one message in full (marks it read).", _object({"id": ID["message"]})),
    ("mail_send", "mail", "POST", "/messages",
     "Send a new email from the user's address (me@acme.com).",
     _object({"to": _strs("Recipient email addresses.", 1), "subject": _str("Subject line."),
              "body": _str("Message text.")}, {"cc": _strs("Addresses to copy.")})),
    ("mail_reply", "mail", "POST", "/messages/{id}/reply",
     "Reply to a message's sender in the same thread (the subject gets 'Re:').",
     _object({"id": ID["message"], "body": _str("Reply text.")})),
    ("mail_move", "mail", "POST", "/messages/{id}/move",
     "Move a message to a folder (inbox, archive, trash or any custom folder name).",
     _object({"id": ID["message"], "folder": _str("Destination folder.")})),
    ("mail_label", "mail", "POST", "/messages/{id}/labels",
     "Add and/or remove labels on a message.",
     _object({"id": ID["message"]}, {"add": _strs("Labels to add."), "remove": _strs("Labels to remove.")})),
    ("calendar_list", "calendar", "GET", "/events",
     "List calendar events overlapping a time window (both ends optional), earliest first.",
     _object({}, {"start": _str(f"Window start, {TIME}."), "end": _str(f"Window end, {TIME}.")})),
    ("calendar_free_busy", "calendar", "GET", "/freebusy",
     "Busy intervals of each attendee within a window, to find a time everyone is free.",
     _object({"start": _str(f"Window start, {TIME}."), "end": _str(f"Window end, {TIME}."),
              "attendees": _strs("Email addresses to check.", 1)})),
    ("calendar_create", "calendar", "POST", "/events",
     "Create a calendar event.",
     _object({"title": _str("Event title."), "start": _str(f"Start, {TIME}."), "end": _str(f"End, {TIME}.")},
             {"attendees": _strs("Attendee email addresses."), "location": _str("Where it happens."),
              "description": _str("Agenda or notes.")})),
    ("calendar_update", "calendar", "PATCH", "/events/{id}",
     "Change an event's title, time, location or description (omitted fields stay as they are).",
     _object({"id": ID["event"]},
             {"title": _str("New title."), "start": _str(f"New start, {TIME}."),
              "end": _str(f"New end, {TIME}."), "location": _str("New location."),
              "description": _str("New description.")})),
    ("calendar_invite", "calendar", "POST", "/events/{id}/invite",
     "Add attendees to an existing event.",
     _object({"id": ID["event"], "attendees": _strs("Email addresses to invite.", 1)})),
    ("contacts_search", "contacts", "GET", "/contacts",
     "Find contacts whose name, email, phone, company, title or notes contain the text.",
     _object({"query": _str("Text to look for (case-insensitive).")})),
    ("contacts_get", "contacts", "GET", "/contacts/{id}",
     "Get one contact by id.", _object({"id": ID["contact"]})),
    ("contacts_create", "contacts", "POST", "/contacts",
     "Add a contact to the address book.",
     _object({"name": _str("Full name.")},
             {"email": _str("Email address."), "phone": _str("Phone number."), "company": _str("Company."),
              "title": _str("Job title."), "notes": _str("Free-form notes.")})),
    ("contacts_update", "contacts", "PATCH", "/contacts/{id}",
     "Change fields of a contact (omitted fields stay as they are).",
     _object({"id": ID["contact"]},
             {"name": _str("Full name."), "email": _str("Email address."), "phone": _str("Phone number."),
              "company": _str("Company."), "title": _str("Job title."), "notes": _str("Free-form notes.")})),
    ("docs_search", "docs", "GET", "/documents",
     "Find documents whose title, path or content contain the text; returns summaries without content.",
     _object({"query": _str("Text to look for (case-insensitive).")})),
    ("docs_read", "docs", "GET", "/documents/{id}",
     "Read a document in full.", _object({"id": ID["document"]})),
    ("docs_create", "docs", "POST", "/documents",
     "Create a document.",
     _object({"title": _str("Title."), "content": _str("Full text.")},
             {"path": _str("Where to store it, e.g. notes/plan.md (derived from the title if omitted).")})),
    ("docs_update", "docs", "PATCH", "/documents/{id}",
     "Replace a document's content and/or title.",
     _object({"id": ID["document"]}, {"content": _str("New full text."), "title": _str("New title.")})),
    ("docs_delete", "docs", "DELETE", "/documents/{id}",
     "Delete a document permanently.", _object({"id": ID["document"]})),
    ("todo_list", "todo", "GET", "/tasks",
     "List to-do tasks, optionally only one list or only done/open ones.",
     _object({}, {"list": _str("Only tasks in this list."),
                  "done": _bool("true: only done tasks; false: only open ones.")})),
    ("todo_create", "todo", "POST", "/tasks",
     "Add a to-do task.",
     _object({"title": _str("What to do.")},
             {"due": _str("Due date (2026-03-05) or date-time."), "priority": PRIORITY,
              "list": _str("List name (default: inbox).")})),
    ("todo_update", "todo", "PATCH", "/tasks/{id}",
     "Change a task: title, due date, priority, or mark it done (omitted fields stay as they are).",
     _object({"id": ID["task"]},
             {"title": _str("New title."), "due": _str("New due date or date-time."),
              "done": _bool("Whether it is done."), "priority": PRIORITY})),
    ("todo_delete", "todo", "DELETE", "/tasks/{id}",
     "Delete a task permanently.", _object({"id": ID["task"]})),
    ("web_search", "search", "GET", "/search",
     "Search the web; returns the top 5 pages (id, url, title, snippet).",
     _object({"query": _str("Search terms.")})),
    ("web_open", "search", "GET", "/pages/{id}",
     "Open a search result and read the whole page.", _object({"id": ID["page"]})),
    ("shop_search", "shop", "GET", "/products",
     "Search the shop's products (id, name, price, stock).",
     _object({"query": _str("Product text to look for (case-insensitive).")})),
    ("shop_order", "shop", "POST", "/orders",
     "Order a product (fails if not enough is in stock).",
     _object({"product_id": _str("Product id from shop_search."),
              "quantity": {"type": "integer", "minimum": 1, "description": "How many."},
              "address": _str("Delivery address.")})),
    ("shop_orders", "shop", "GET", "/orders",
     "List the user's orders.", _object({})),
    ("shop_cancel", "shop", "POST", "/orders/{id}/cancel",
     "Cancel an order that has not shipped yet (its stock is restored).", _object({"id": ID["order"]})),
    ("ask_user", None, None, None,
     "Ask the user a question when something needed is missing or ambiguous; returns their reply.",
     _object({"question": _str("The question for the user.")})),
    ("finish", None, None, None,
     "End the task with your final reply to the user.",
     _object({"answer": _str("The final reply to the user: what was done, or the answer asked for.")})),
]

TOOLS: dict[str, ToolSpec] = {row[0]: ToolSpec(*row) for row in _TABLE}
SERVICES: tuple[str, ...] = tuple(dict.fromkeys(t.service for t in TOOLS.values() if t.service is not None))


def tool(name: str) -> ToolSpec:
    """The tool's spec; an unknown name is an error listing the known ones."""
    if name not in TOOLS:
        raise unknown_name("claw tool", name, TOOLS)
    return TOOLS[name]


def openai_tools(names: Iterable[str]) -> list[dict[str, Any]]:
    """OpenAI function-tool schemas for these tools, in the order given (copies: safe to mutate)."""
    return [
        {"type": "function", "function": {
            "name": spec.name, "description": spec.description, "parameters": copy.deepcopy(spec.parameters)}}
        for spec in map(tool, names)
    ]


def _query_value(value: Any) -> Any:
    """How arguments travel in a query string: booleans as true/false, lists as a repeated key."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_query_value(v) for v in value]
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def request_for(spec: ToolSpec, arguments: dict[str, Any]) -> tuple[str, str, dict[str, Any], dict | None]:
    """(method, path, query, body) for a call: path arguments fill the template; the rest go in the query
    (GET, DELETE; null ones dropped, lists as repeated keys, e.g. `params=query` with httpx) or in the JSON
    body (POST, PATCH; always an object)."""
    if spec.service is None or spec.method is None or spec.path is None:
        raise ArgumentError(f"{spec.name} is answered by the env, not by a service")
    rest = dict(arguments)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = rest.pop(name, None)
        if value is None:
            raise ArgumentError(f"{spec.name} needs the argument {name!r}")
        # Anything else makes a request, so a strange id gets the service's own 404, as from a real API.
        text = value if isinstance(value, str) else json.dumps(value)
        return quote(text, safe="")

    path = PATH_PARAM.sub(fill, spec.path)
    if spec.method in ("GET", "DELETE"):
        return spec.method, path, {k: _query_value(v) for k, v in rest.items() if v is not None}, None
    return spec.method, path, {}, rest
