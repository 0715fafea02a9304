"""The Claw services over real HTTP: one real ServiceHost (a child process) per test worker, tools called
through the catalog exactly as the env calls them."""

from __future__ import annotations

import copy
import os
import random
import socket
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from orchard_envs.errors import ConfigError, SandboxError
from orchard_envs.tasks.claw.catalog import SERVICES, TOOLS, ArgumentError, openai_tools, request_for
from orchard_envs.tasks.claw.host import ServiceHost

ME = "me@acme.com"
ALICE, BOB = "alice@example.com", "bob@example.com"
FAULT_TIMEOUT_S = 0.2

FIXTURES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "mail": {"messages": [
        {"id": "m1", "folder": "inbox", "from": ALICE, "to": [ME], "cc": [], "subject": "Invoice March",
         "body": "Please pay invoice #42 by Friday.", "labels": ["finance"], "date": "2026-03-01T10:00",
         "read": False, "thread_id": "th1"},
        {"id": "m2", "folder": "inbox", "from": BOB, "to": [ME], "cc": [ALICE], "subject": "Lunch?",
         "body": "Lunch on Thursday?", "labels": [], "date": "2026-03-01T12:00", "read": True,
         "thread_id": "th2"},
        {"id": "m3", "folder": "archive", "from": "carol@example.com", "to": [ME], "cc": [],
         "subject": "Re: Roadmap", "body": "Roadmap draft attached.", "labels": ["work"],
         "date": "2026-02-27T09:00", "read": False, "thread_id": "th3"},
    ]},
    "calendar": {"events": [
        {"id": "e1", "title": "Standup", "start": "2026-03-02T09:00", "end": "2026-03-02T09:30",
         "attendees": [ME, ALICE], "location": "Room 1", "description": ""},
        {"id": "e2", "title": "Design review", "start": "2026-03-02T10:00", "end": "2026-03-02T11:00",
         "attendees": [BOB], "location": "", "description": "v2 mocks"},
        {"id": "e3", "title": "1:1 Alice", "start": "2026-03-02T10:30", "end": "2026-03-02T11:30",
         "attendees": ["Alice@Example.com"], "location": "", "description": ""},
        {"id": "e4", "title": "Offsite", "start": "2026-03-03T09:00", "end": "2026-03-03T17:00",
         "attendees": [ALICE, BOB], "location": "Lisbon", "description": ""},
    ]},
    "contacts": {"contacts": [
        {"id": "c1", "name": "Alice Smith", "email": ALICE, "phone": "+1 555 0100", "company": "Acme",
         "title": "CFO", "notes": ""},
        {"id": "c2", "name": "Bob Jones", "email": BOB, "phone": "", "company": "Globex", "title": "Engineer",
         "notes": "prefers mornings"},
        {"id": "c10", "name": "Carol White", "email": "carol@example.com", "phone": "", "company": "Acme",
         "title": "", "notes": ""},
    ]},
    "docs": {"documents": [
        {"id": "d1", "path": "notes/plan.md", "title": "Q2 plan", "content": "Ship the roadmap by June.",
         "updated": "2026-02-01T10:00"},
        {"id": "d2", "path": "notes/budget.md", "title": "Budget", "content": "Total: 1200 EUR.",
         "updated": "2026-02-02T10:00"},
    ]},
    "todo": {"tasks": [
        {"id": "t1", "title": "Pay invoice", "due": "2026-03-05", "done": False, "priority": "high",
         "list": "inbox"},
        {"id": "t2", "title": "Buy milk", "due": None, "done": True, "priority": "low", "list": "home"},
    ]},
    "search": {"pages": [
        {"id": "p1", "url": "https://ex.com/asyncio", "title": "Python asyncio guide",
         "text": "An asyncio event loop tutorial."},
        {"id": "p2", "url": "https://ex.com/garden", "title": "Gardening", "text": "Tomatoes need sun."},
        {"id": "p3", "url": "https://ex.com/internals", "title": "Event loop internals",
         "text": "The event loop in Python."},
        {"id": "p4", "url": "https://ex.com/snakes", "title": "Snakes", "text": "The python is a snake."},
        {"id": "p5", "url": "https://ex.com/knit", "title": "Knitting", "text": "Make a loop with yarn."},
        {"id": "p6", "url": "https://ex.com/party", "title": "Party planning",
         "text": "Plan the event early."},
        {"id": "p7", "url": "https://ex.com/long", "title": "Long read",
         "text": "Filler words go here. " * 30 + "Finally the zeppelin appears. " + "More filler. " * 20},
        {"id": "p10", "url": "https://ex.com/loops", "title": "Python loop event", "text": "Short page."},
    ]},
    "shop": {
        "products": [
            {"id": "p1", "name": "USB-C cable", "price": 9.99, "stock": 3},
            {"id": "p2", "name": "Laptop stand", "price": 39.5, "stock": 0},
        ],
        "orders": [
            {"id": "o1", "product_id": "p1", "quantity": 1, "status": "shipped", "address": "1 Main St"},
        ],
    },
}


class Api:
    """Calls tools the way the env does (catalog -> request_for -> HTTP) and reads the audit."""

    def __init__(self, host: ServiceHost, client: httpx.Client) -> None:
        self.host, self.client = host, client

    def reset(self, faults: dict[str, dict[str, Any]] | None = None) -> None:
        self.host.reset(copy.deepcopy(FIXTURES), faults or {})

    def call(self, tool: str, **arguments: Any) -> httpx.Response:
        spec = TOOLS[tool]
        method, path, query, body = request_for(spec, arguments)
        assert spec.service is not None
        return self.client.request(method, self.host.urls[spec.service] + path, params=query, json=body)

    def ok(self, tool: str, **arguments: Any) -> Any:
        response = self.call(tool, **arguments)
        assert response.is_success, (response.status_code, response.text)
        return response.json()

    def audit(self, service: str) -> dict[str, Any]:
        return self.client.get(f"{self.host.urls[service]}/_audit").json()

    def state(self, service: str, collection: str) -> list[dict[str, Any]]:
        return self.audit(service)["state"][collection]

    def record(self, service: str, collection: str, record_id: str) -> dict[str, Any]:
        return next(r for r in self.state(service, collection) if r["id"] == record_id)


@pytest.fixture(scope="module")
def host():
    with ServiceHost().start(timeout_s=FAULT_TIMEOUT_S) as started:
        yield started


@pytest.fixture(scope="module")
def client():
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


@pytest.fixture
def api(host, client) -> Api:
    api = Api(host, client)
    api.reset()
    return api


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    """A real API's error: the status, and `{"error": sentence}` naming what is wrong."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    for word in words:
        assert word in body["error"], body["error"]


# --- mail ---------------------------------------------------------------------------------------------


def test_mail_search_filters_and_summaries(api):
    assert [m["id"] for m in api.ok("mail_search")] == ["m2", "m1", "m3"]  # newest first
    assert [m["id"] for m in api.ok("mail_search", query="INVOICE")] == ["m1"]
    assert [m["id"] for m in api.ok("mail_search", query="alice")] == ["m2", "m1"]  # from or cc
    assert [m["id"] for m in api.ok("mail_search", folder="archive")] == ["m3"]
    assert [m["id"] for m in api.ok("mail_search", label="Finance")] == ["m1"]
    assert [m["id"] for m in api.ok("mail_search", unread_only=True)] == ["m1", "m3"]
    assert [m["id"] for m in api.ok("mail_search", unread_only=False, folder="inbox")] == ["m2", "m1"]
    summary = api.ok("mail_search", query="lunch")[0]
    assert set(summary) == {"id", "from", "to", "subject", "date", "labels", "folder", "read"}


def test_mail_read_marks_read(api):
    message = api.ok("mail_read", id="m1")
    assert message["body"] == "Please pay invoice #42 by Friday." and message["read"] is True
    assert api.record("mail", "messages", "m1")["read"] is True
    assert_error(api.call("mail_read", id="m99"), 404, "no message with id 'm99'")


def test_mail_send_and_reply(api):
    sent = api.ok("mail_send", to=[BOB], subject="Notes", body="See attached.", cc=[ALICE])
    assert sent["id"] == "m4" and sent["folder"] == "sent" and sent["from"] == ME
    assert sent["to"] == [BOB] and sent["cc"] == [ALICE] and sent["thread_id"] == "m4"
    reply = api.ok("mail_reply", id="m1", body="Paid.")
    assert reply["id"] == "m5" and reply["to"] == [ALICE] and reply["subject"] == "Re: Invoice March"
    assert reply["thread_id"] == "th1" and reply["folder"] == "sent" and reply["from"] == ME
    assert api.ok("mail_reply", id="m3", body="ok")["subject"] == "Re: Roadmap"  # never "Re: Re:"
    assert api.ok("mail_reply", id="m4", body="ping")["to"] == [BOB]  # own message: its recipients
    assert [m["id"] for m in api.state("mail", "messages")] == ["m1", "m2", "m3", "m4", "m5", "m6", "m7"]
    assert_error(api.call("mail_reply", id="m42", body="x"), 404, "m42")
    assert_error(api.call("mail_send", subject="x", body="y"), 400, "'to'")
    assert_error(api.call("mail_send", to=[], subject="x", body="y"), 400, "'to'")
    extra = api.call("mail_send", to=[BOB], subject="x", body="y", bcc=[ALICE])
    assert_error(extra, 400, "unknown field 'bcc'")


def test_mail_move_and_label(api):
    assert api.ok("mail_move", id="m1", folder="finance")["folder"] == "finance"
    assert [m["id"] for m in api.ok("mail_search", folder="finance")] == ["m1"]
    labelled = api.ok("mail_label", id="m1", add=["paid", "urgent", "paid"], remove=["FINANCE"])
    assert labelled["labels"] == ["paid", "urgent"]
    assert api.ok("mail_label", id="m2")["labels"] == []
    assert_error(api.call("mail_move", id="m9", folder="x"), 404, "no message with id 'm9'")
    assert_error(api.call("mail_move", id="m1"), 400, "missing required field 'folder'")
    assert_error(api.call("mail_label", id="m1", add="paid"), 400, "'add'")


# --- calendar -----------------------------------------------------------------------------------------


def test_calendar_list_window(api):
    assert [e["id"] for e in api.ok("calendar_list")] == ["e1", "e2", "e3", "e4"]
    window = {"start": "2026-03-02T09:30", "end": "2026-03-02T10:30"}
    assert [e["id"] for e in api.ok("calendar_list", **window)] == ["e2"]  # touching ends do not overlap
    assert [e["id"] for e in api.ok("calendar_list", start="2026-03-03")] == ["e4"]
    assert [e["id"] for e in api.ok("calendar_list", end="2026-03-02T09:15")] == ["e1"]
    assert_error(api.call("calendar_list", start="next tuesday"), 400, "'start'", "ISO 8601")
    assert_error(api.call("calendar_list", start="2026-03-03", end="2026-03-02"), 400, "'end'")


def test_calendar_free_busy(api):
    window = {"start": "2026-03-02T08:00", "end": "2026-03-02T12:00"}
    busy = api.ok("calendar_free_busy", **window, attendees=[ALICE, ME, "dave@example.com"])["busy"]
    assert busy[ALICE] == [{"start": "2026-03-02T09:00", "end": "2026-03-02T09:30"},
                           {"start": "2026-03-02T10:30", "end": "2026-03-02T11:30"}]
    assert busy[ME] == [{"start": "2026-03-02T09:00", "end": "2026-03-02T09:30"},  # the owner: every event
                        {"start": "2026-03-02T10:00", "end": "2026-03-02T11:30"}]  # merged overlap
    assert busy["dave@example.com"] == []
    window = {"start": "2026-03-02T09:15", "end": "2026-03-02T11:00"}
    clipped = api.ok("calendar_free_busy", **window, attendees=[ALICE])
    assert clipped["busy"][ALICE] == [{"start": "2026-03-02T09:15", "end": "2026-03-02T09:30"},
                                      {"start": "2026-03-02T10:30", "end": "2026-03-02T11:00"}]
    assert_error(api.call("calendar_free_busy", **window), 400, "missing required field 'attendees'")


def test_calendar_create_update_invite(api):
    created = api.ok("calendar_create", title="Sync", start="2026-03-04T14:00:00", end="2026-03-04T14:30",
                     attendees=[BOB])
    assert created == {"id": "e5", "title": "Sync", "start": "2026-03-04T14:00", "end": "2026-03-04T14:30",
                       "attendees": [BOB], "location": "", "description": ""}
    moved = {"start": "2026-03-04T15:00", "end": "2026-03-04T15:45"}
    updated = api.ok("calendar_update", id="e5", **moved, location="Cafe")
    assert (updated["start"], updated["end"], updated["location"], updated["title"]) == (
        "2026-03-04T15:00", "2026-03-04T15:45", "Cafe", "Sync")
    assert api.record("calendar", "events", "e5") == updated
    invited = api.ok("calendar_invite", id="e5", attendees=["BOB@example.com", ALICE])
    assert invited["attendees"] == [BOB, ALICE]
    assert_error(api.call("calendar_update", id="e5", end="2026-03-04T14:00"), 400, "'end'")
    assert api.record("calendar", "events", "e5")["end"] == "2026-03-04T15:45"  # a rejected update: no change
    assert_error(api.call("calendar_update", id="e9", title="x"), 404, "no event with id 'e9'")
    assert_error(api.call("calendar_update", id="e1"), 400, "nothing to update")
    assert_error(api.call("calendar_invite", id="e9", attendees=[BOB]), 404, "e9")
    assert_error(api.call("calendar_create", title="x", start="2026-03-04T10:00"), 400, "'end'")
    backwards = {"start": "2026-03-04T10:00", "end": "2026-03-04T09:00"}
    assert_error(api.call("calendar_create", title="x", **backwards), 400, "must be after")


# --- contacts -----------------------------------------------------------------------------------------


def test_contacts(api):
    assert [c["id"] for c in api.ok("contacts_search", query="acme")] == ["c1", "c10"]
    assert [c["id"] for c in api.ok("contacts_search", query="MORNINGS")] == ["c2"]
    assert api.ok("contacts_get", id="c2")["name"] == "Bob Jones"
    created = api.ok("contacts_create", name="Dan Brown", email="dan@example.com", company="Initech")
    assert created["id"] == "c11" and created["phone"] == "" and created["company"] == "Initech"
    updated = api.ok("contacts_update", id="c11", phone="+44 20 0000", title="CTO")
    assert (updated["phone"], updated["title"], updated["email"]) == ("+44 20 0000", "CTO", "dan@example.com")
    assert api.record("contacts", "contacts", "c11") == updated
    assert_error(api.call("contacts_get", id="c3"), 404, "no contact with id 'c3'")
    assert_error(api.call("contacts_update", id="c3", name="x"), 404, "c3")
    assert_error(api.call("contacts_create", email="x@example.com"), 400, "missing required field 'name'")
    assert_error(api.call("contacts_create", name="Eve", email="not-an-address"), 400, "'email'")
    assert_error(api.call("contacts_search"), 400, "'query'")


# --- docs ---------------------------------------------------------------------------------------------


def test_docs(api):
    assert api.ok("docs_search", query="ROADMAP") == [
        {"id": "d1", "path": "notes/plan.md", "title": "Q2 plan", "updated": "2026-02-01T10:00"}]
    assert api.ok("docs_read", id="d2")["content"] == "Total: 1200 EUR."
    created = api.ok("docs_create", title="Trip Notes!", content="Pack light.")
    assert (created["id"], created["path"], created["updated"]) == ("d3", "trip-notes.md", "2026-03-02T09:00")
    assert api.ok("docs_create", title="trip notes", content="again")["path"] == "trip-notes-2.md"
    assert_error(api.call("docs_create", title="x", content="y", path="notes/plan.md"), 409, "notes/plan.md")
    updated = api.ok("docs_update", id="d1", content="Ship by July.")
    assert updated["content"] == "Ship by July." and updated["title"] == "Q2 plan"
    assert updated["updated"] == "2026-03-02T09:00"
    assert api.ok("docs_delete", id="d2") == {"deleted": "d2"}
    assert [d["id"] for d in api.state("docs", "documents")] == ["d1", "d3", "d4"]
    assert_error(api.call("docs_read", id="d2"), 404, "no document with id 'd2'")
    assert_error(api.call("docs_delete", id="d2"), 404, "d2")
    assert_error(api.call("docs_update", id="d1", content=5), 400, "'content'")


# --- todo ---------------------------------------------------------------------------------------------


def test_todo(api):
    assert [t["id"] for t in api.ok("todo_list")] == ["t1", "t2"]
    assert [t["id"] for t in api.ok("todo_list", list="HOME")] == ["t2"]
    assert [t["id"] for t in api.ok("todo_list", done=False)] == ["t1"]
    created = api.ok("todo_create", title="File taxes", due="2026-04-15")
    assert created == {"id": "t3", "title": "File taxes", "due": "2026-04-15", "done": False,
                       "priority": "normal", "list": "inbox"}
    updated = api.ok("todo_update", id="t3", done=True, priority="high", due="2026-04-10T17:00:00")
    assert (updated["done"], updated["priority"], updated["due"]) == (True, "high", "2026-04-10T17:00")
    assert api.ok("todo_delete", id="t1") == {"deleted": "t1"}
    assert [t["id"] for t in api.state("todo", "tasks")] == ["t2", "t3"]
    assert_error(api.call("todo_update", id="t1", done=True), 404, "no task with id 't1'")
    assert_error(api.call("todo_create", title="x", priority="urgent"), 400, "'priority'")
    assert_error(api.call("todo_create", title="x", due="someday"), 400, "'due'")
    assert_error(api.call("todo_list", done="maybe"), 400, "'done'")


# --- search -------------------------------------------------------------------------------------------


def test_web_search_ranking_and_snippets(api):
    results = api.ok("web_search", query="The Python event loop?")
    # p1, p3, p10 match all three terms (ties by natural id order); then one-term pages by id; top 5 only.
    assert [r["id"] for r in results] == ["p1", "p3", "p10", "p4", "p5"]
    assert set(results[0]) == {"id", "url", "title", "snippet"}
    assert api.ok("web_search", query="The Python event loop?") == results  # deterministic
    long = api.ok("web_search", query="zeppelin")
    assert [r["id"] for r in long] == ["p7"]
    assert "zeppelin" in long[0]["snippet"] and len(long[0]["snippet"]) <= 170
    assert api.ok("web_search", query="the of and") == []
    assert api.ok("web_open", id="p10")["url"] == "https://ex.com/loops"
    assert_error(api.call("web_open", id="p99"), 404, "no page with id 'p99'")
    assert_error(api.call("web_search"), 400, "'query'")
    read_only = api.client.post(f"{api.host.urls['search']}/search", json={"query": "x"})
    assert_error(read_only, 405, "POST /search")
    assert api.audit("search")["state"] == FIXTURES["search"]


# --- shop ---------------------------------------------------------------------------------------------


def test_shop(api):
    assert [p["id"] for p in api.ok("shop_search", query="usb")] == ["p1"]
    order = api.ok("shop_order", product_id="p1", quantity=2, address="9 Elm St")
    assert order == {"id": "o2", "product_id": "p1", "quantity": 2, "status": "placed", "address": "9 Elm St",
                     "total": 19.98}
    assert api.record("shop", "products", "p1")["stock"] == 1
    assert_error(api.call("shop_order", product_id="p1", quantity=2, address="x"), 409, "only 1", "stock")
    assert_error(api.call("shop_order", product_id="p2", quantity=1, address="x"), 409, "only 0")
    assert api.record("shop", "products", "p1")["stock"] == 1  # refused orders take nothing
    assert [o["id"] for o in api.ok("shop_orders")] == ["o1", "o2"]
    assert api.ok("shop_cancel", id="o2")["status"] == "cancelled"
    assert api.record("shop", "products", "p1")["stock"] == 3  # restored
    assert_error(api.call("shop_cancel", id="o2"), 409, "already cancelled")
    assert_error(api.call("shop_cancel", id="o1"), 409, "shipped")
    assert_error(api.call("shop_cancel", id="o9"), 404, "no order with id 'o9'")
    unknown = api.call("shop_order", product_id="p9", quantity=1, address="x")
    assert_error(unknown, 404, "no product with id 'p9'")
    assert_error(api.call("shop_order", product_id="p1", quantity=0, address="x"), 400, "'quantity'")


# --- validation, reset, audit ------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_bad_requests_answer_400_with_a_sentence(api, service):
    url = api.host.urls[service]
    write = {"mail": "/messages", "calendar": "/events", "contacts": "/contacts", "docs": "/documents",
             "todo": "/tasks", "search": None, "shop": "/orders"}[service]
    if write is None:
        assert_error(api.client.get(f"{url}/search"), 400, "missing required field 'query'")
        return
    assert_error(api.client.post(f"{url}{write}", content=b"{not json", headers={"content-type":
                 "application/json"}), 400, "not valid JSON")
    assert_error(api.client.post(f"{url}{write}", json=[1, 2]), 400, "must be an object")
    assert_error(api.client.post(f"{url}{write}", json={"zzz": 1}), 400, "field")
    statuses = [call["status"] for call in api.audit(service)["calls"]]
    assert statuses == [400, 400, 400]  # validation errors are audited like any call


def test_reset_replaces_state_and_clears_audit(api):
    api.ok("todo_create", title="x")
    api.ok("mail_move", id="m1", folder="trash")
    assert len(api.audit("todo")["calls"]) == 1
    api.host.reset({"todo": {"tasks": [{"id": "t7", "title": "only"}]}})
    todo = api.audit("todo")
    assert todo == {"calls": [], "state": {"tasks": [{"id": "t7", "title": "only"}]},
                    "fixture": {"tasks": [{"id": "t7", "title": "only"}]}}
    assert api.audit("mail")["state"] == {"messages": []}  # services not in the fixtures start empty
    assert api.audit("shop")["state"] == {"products": [], "orders": []}
    assert api.ok("todo_create", title="next")["id"] == "t8"  # ids continue after the fixture's


class _FaultsModel(BaseModel):
    schedule: list[int]


def test_reset_rejects_bad_fixtures(host):
    with pytest.raises(ConfigError, match="no collection 'msgs'"):
        host.reset({"mail": {"msgs": []}})
    with pytest.raises(ConfigError, match="string 'id'"):
        host.reset({"todo": {"tasks": [{"title": "no id"}]}})
    with pytest.raises(ConfigError, match="duplicate"):
        host.reset({"todo": {"tasks": [{"id": "t1"}, {"id": "t1"}]}})
    with pytest.raises(ConfigError, match="rate"):
        host.reset(faults={"todo": {"rate": 2}})
    host.reset(faults={"todo": _FaultsModel(schedule=[0])})  # a task's pydantic Faults works as well
    with pytest.raises(ConfigError, match="unknown claw service 'mailbox'"):
        host.reset({"mailbox": {}})


def test_audit_records_every_call(api):
    api.ok("todo_list", list="home", done=True)
    api.ok("todo_create", title="Call mom", priority="high")
    api.call("todo_delete", id="t9")
    api.client.get(f"{api.host.urls['todo']}/_health")  # control endpoints are not audited
    calls = api.audit("todo")["calls"]
    assert [c["seq"] for c in calls] == [0, 1, 2]
    assert calls[0] == {
        "seq": 0, "method": "GET", "path": "/tasks", "query": {"list": "home", "done": "true"}, "body": None,
        "status": 200, "response": [FIXTURES["todo"]["tasks"][1]], "fault": None,
    }
    assert calls[1]["body"] == {"title": "Call mom", "priority": "high"} and calls[1]["status"] == 201
    assert calls[1]["response"]["id"] == "t3" and calls[1]["query"] == {}
    assert (calls[2]["method"], calls[2]["path"], calls[2]["status"]) == ("DELETE", "/tasks/t9", 404)
    assert calls[2]["response"] == {"error": "no task with id 't9'"}
    api.ok("calendar_free_busy", start="2026-03-02", end="2026-03-03", attendees=[ALICE, BOB])
    assert api.audit("calendar")["calls"][0]["query"]["attendees"] == [ALICE, BOB]  # a list: repeated key
    assert api.audit("mail")["calls"] == []


# --- faults -------------------------------------------------------------------------------------------


def test_scheduled_faults_do_not_change_state(api):
    # kinds as YAML reads `[500]`: a number; mail gets the default kinds, whose first is 429.
    api.reset({"todo": {"schedule": [1, 2], "kinds": [500]}, "mail": {"schedule": [0]}})
    assert api.call("todo_create", title="a").status_code == 201
    faulted = api.call("todo_create", title="b")
    assert_error(faulted, 500, "internal error")
    assert api.call("todo_delete", id="t1").status_code == 500
    assert api.call("todo_create", title="b").status_code == 201  # the retry succeeds
    assert_error(api.call("mail_move", id="m1", folder="trash"), 429, "rate limited")  # default: first kind
    assert api.record("mail", "messages", "m1")["folder"] == "inbox"
    audit = api.audit("todo")
    assert [c["fault"] for c in audit["calls"]] == [None, "500", "500", None]
    assert audit["calls"][1]["body"] == {"title": "b"} and audit["calls"][1]["status"] == 500
    assert [t["id"] for t in audit["state"]["tasks"]] == ["t1", "t2", "t3", "t4"]  # t1 kept, b created once


def test_seeded_rate_faults_are_deterministic(api):
    faults = {"todo": {"rate": 0.5, "seed": 7, "kinds": ["429", "500"]}}

    def run() -> list[str | None]:
        api.reset(faults)
        for _ in range(20):
            api.call("todo_list")
        return [c["fault"] for c in api.audit("todo")["calls"]]

    first = run()
    assert first == run()
    rng, expected = random.Random(7), []
    for _ in range(20):  # the contract: one draw per call, the kind drawn by the same generator
        expected.append(rng.choice(["429", "500"]) if rng.random() < 0.5 else None)
    assert first == expected and None in first and "429" in first and "500" in first


def test_every_call_faulted_changes_nothing(api):
    api.reset({name: {"rate": 1.0, "kinds": ["429", "500"], "seed": 3} for name in SERVICES})
    api.call("todo_create", title="x")
    api.call("mail_send", to=[BOB], subject="s", body="b")
    api.call("shop_order", product_id="p1", quantity=1, address="x")
    api.call("docs_delete", id="d1")
    api.call("mail_read", id="m1")
    for service in SERVICES:
        audit = api.audit(service)
        assert audit["state"] == FIXTURES[service]
        assert all(c["fault"] in ("429", "500") and c["status"] in (429, 500) for c in audit["calls"])


def test_timeout_fault_answers_504_after_timeout_s(api):
    api.reset({"todo": {"schedule": [0], "kinds": ["timeout"]}})
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        slow = pool.submit(api.call, "todo_create", title="slow")
        time.sleep(FAULT_TIMEOUT_S / 4)
        # While it hangs, the service answers other calls, and the hanging call is already audited.
        assert [t["id"] for t in api.ok("todo_list")] == ["t1", "t2"]
        assert [(c["seq"], c["fault"], c["status"]) for c in api.audit("todo")["calls"]] == [
            (0, "timeout", 504), (1, None, 200)]
        response = slow.result()
        elapsed = time.monotonic() - started
    assert_error(response, 504, "timeout")
    assert elapsed >= FAULT_TIMEOUT_S  # it did stall (no upper bound: timings are not pass/fail here)
    assert api.state("todo", "tasks") == FIXTURES["todo"]["tasks"]


# --- catalog ------------------------------------------------------------------------------------------


def test_catalog_matches_the_routes(host, client):
    """Each service tool's schema names exactly the route's path, query and body parameters (and the same
    required ones), and every agent-facing route has a tool."""
    for service in SERVICES:
        openapi = client.get(f"{host.urls[service]}/_openapi.json").json()
        routes = {(method.upper(), path) for path, item in openapi["paths"].items() for method in item
                  if not path.startswith("/_")}
        tools = [t for t in TOOLS.values() if t.service == service]
        assert routes == {(t.method, t.path) for t in tools}, service
        for spec in tools:
            operation = openapi["paths"][spec.path][spec.method.lower()]
            names, required = set(), set()
            for parameter in operation.get("parameters", []):
                names.add(parameter["name"])
                if parameter.get("required"):
                    required.add(parameter["name"])
            if "requestBody" in operation:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
                names |= set(schema["properties"])
                required |= set(schema.get("required", []))
            assert names == set(spec.parameters["properties"]), spec.name
            assert required == set(spec.parameters["required"]), spec.name
            assert spec.parameters["additionalProperties"] is False


def test_catalog_tools_and_requests():
    assert {"finish", "ask_user"} <= set(TOOLS) and TOOLS["finish"].service is None
    assert SERVICES == ("mail", "calendar", "contacts", "docs", "todo", "search", "shop")
    tools = openai_tools(["mail_search", "finish"])
    assert [t["function"]["name"] for t in tools] == ["mail_search", "finish"]
    finish = TOOLS["finish"]
    assert tools[1] == {"type": "function", "function": {
        "name": "finish", "description": finish.description, "parameters": finish.parameters}}
    tools[1]["function"]["parameters"]["required"].append("x")  # copies: the catalog is untouched
    assert TOOLS["finish"].parameters["required"] == ["answer"]
    with pytest.raises(ConfigError, match="did you mean 'mail_send'"):
        openai_tools(["mail_sned"])
    assert request_for(TOOLS["mail_move"], {"id": "a/b c", "folder": "x"}) == (
        "POST", "/messages/a%2Fb%20c/move", {}, {"folder": "x"})
    assert request_for(TOOLS["calendar_free_busy"], {"start": "s", "end": "e", "attendees": ["a", "b"]}) == (
        "GET", "/freebusy", {"start": "s", "end": "e", "attendees": ["a", "b"]}, None)
    assert request_for(TOOLS["mail_search"], {"unread_only": True, "folder": None}) == (
        "GET", "/messages", {"unread_only": "true"}, None)
    assert request_for(TOOLS["shop_cancel"], {"id": "o1"}) == ("POST", "/orders/o1/cancel", {}, {})
    assert request_for(TOOLS["docs_delete"], {"id": 7}) == ("DELETE", "/documents/7", {}, None)
    with pytest.raises(ArgumentError, match="'id'"):
        request_for(TOOLS["mail_read"], {})
    with pytest.raises(ArgumentError, match="env"):
        request_for(TOOLS["finish"], {"answer": "done"})


# --- the host -----------------------------------------------------------------------------------------


def test_hosts_side_by_side_and_close(api):
    with ServiceHost().start() as other:
        assert set(other.urls) == set(SERVICES)
        assert set(other.urls.values()).isdisjoint(api.host.urls.values())
        other.reset({"todo": {"tasks": [{"id": "t1", "title": "theirs"}]}})
        api.ok("todo_create", title="ours")
        assert [t["title"] for t in other.audit()["todo"]["state"]["tasks"]] == ["theirs"]
        assert other.audit()["todo"]["calls"] == []
        assert [t["id"] for t in api.state("todo", "tasks")] == ["t1", "t2", "t3"]
        port = int(other.urls["todo"].rsplit(":", 1)[1])
        pid = other.proc.pid
    assert not other.alive()
    other.close()  # idempotent
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    with pytest.raises(SandboxError, match="not running"):
        other.audit()


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its new parent has not reaped yet."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat_line[stat_line.rindex(")") + 2] == "Z"


def test_host_dies_with_its_owner():
    """Even a SIGKILLed owner (no atexit) takes its host down: the child exits when its stdin closes."""
    script = ("from orchard_envs.tasks.claw.host import ServiceHost; import time; "
              "host = ServiceHost().start(); print(host.proc.pid, flush=True); time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        child = int(owner.stdout.readline())
        assert not _gone(child)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 10
        while not _gone(child):
            assert time.monotonic() < deadline, "the host outlived its owner"
            time.sleep(0.02)
    finally:
        owner.kill()
        owner.wait()


def test_host_start_failures_raise_sandbox_error(tmp_path, monkeypatch):
    with pytest.raises(SandboxError, match="did not come up"):
        ServiceHost().start(startup_timeout_s=0.01)
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'no python here' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr("sys.executable", str(broken))
    with pytest.raises(SandboxError, match=r"exited with 3.*no python here"):
        ServiceHost().start()


# --- property: todo against a model -------------------------------------------------------------------

TITLES = st.text(min_size=1, max_size=8)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), TITLES, st.sampled_from(["low", "normal", "high"])),
        st.tuples(st.just("update"), st.integers(0, 6), st.fixed_dictionaries({}, optional={
            "title": TITLES, "done": st.booleans(), "priority": st.sampled_from(["low", "high"])})),
        st.tuples(st.just("delete"), st.integers(0, 6)),
    ),
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_todo_calls_match_a_model(api, operations):
    api.reset()
    model = {t["id"]: dict(t) for t in FIXTURES["todo"]["tasks"]}
    next_number, expected_statuses = 3, []
    for op in operations:
        if op[0] == "create":
            _, title, priority = op
            response = api.call("todo_create", title=title, priority=priority)
            task_id, next_number = f"t{next_number}", next_number + 1
            model[task_id] = {"id": task_id, "title": title, "due": None, "done": False, "priority": priority,
                              "list": "inbox"}
            expected_statuses.append(201)
        elif op[0] == "update":
            task_id, fields = f"t{op[1]}", op[2]
            response = api.call("todo_update", id=task_id, **fields)
            if task_id not in model:
                expected_statuses.append(404)
            elif not fields:
                expected_statuses.append(400)
            else:
                model[task_id].update(fields)
                expected_statuses.append(200)
        else:
            task_id = f"t{op[1]}"
            response = api.call("todo_delete", id=task_id)
            expected_statuses.append(200 if model.pop(task_id, None) is not None else 404)
        assert response.status_code == expected_statuses[-1], response.text
    audit = api.audit("todo")
    assert audit["state"]["tasks"] == list(model.values())
    assert [c["status"] for c in audit["calls"]] == expected_statuses


def test_the_task_format_knows_each_services_collections():
    # tasks/claw/task.py keeps its own small table (so loading a suite needs no web framework): it must
    # say what the services declare
    import importlib

    from orchard_envs.tasks.claw.task import SERVICES as TASK_SERVICES

    declared = {
        name: tuple(importlib.import_module(f"orchard_envs.tasks.claw.services.{name}").SERVICE.collections)
        for name in SERVICES
    }
    assert declared == TASK_SERVICES
