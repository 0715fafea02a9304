"""Grading web tasks from the site's own state and the agent's answer: every check a task's `expected`
names must hold for reward 1 (the breakdown shows each check). An answer matches when an accepted phrase
appears in it after normalisation and no rejected phrase does (a reply listing every candidate fails).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from orchard_envs.envs.verdict import Verdict
from orchard_envs.tasks.web.sites import shop_data
from orchard_envs.tasks.web.task import WebTask

State = dict[str, list[dict[str, Any]]]
Checks = dict[str, bool]
NUMBER_COMMA = re.compile(r"(?<=\d),(?=\d{3})")
NOT_WORD = re.compile(r"[^a-z0-9.:@\-]+")


def normalise(text: str) -> list[str]:
    """Lower-cased tokens: currency signs and thousands separators dropped, punctuation split off."""
    text = NUMBER_COMMA.sub("", text.lower().replace("$", " "))
    return [token.strip(".:-") for token in NOT_WORD.split(text) if token.strip(".:-")]


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether `phrase`'s tokens appear, in order and adjacent, among `text`'s."""
    words, want = normalise(text), normalise(phrase)
    return bool(want) and any(words[i : i + len(want)] == want for i in range(len(words) - len(want) + 1))


def answer_matches(answer: str | None, accept: list[str], reject: list[str] = ()) -> bool:
    """An accepted phrase is in the answer and no rejected one is."""
    if not answer:
        return False
    return any(contains_phrase(answer, a) for a in accept) and not any(
        contains_phrase(answer, r) for r in reject
    )


def _answer(expected: dict, state: State, answer: str | None) -> Checks:
    return {"answer": answer_matches(answer, expected["accept"], expected.get("reject", []))}


def _new_orders(expected: dict, state: State) -> list[dict]:
    return [o for o in state["orders"] if o["id"] > expected["earlier_orders"] and o["status"] != "cancelled"]


def _order(expected: dict, state: State, answer: str | None) -> Checks:
    orders = _new_orders(expected, state)
    checks = {"one_new_order": len(orders) == 1}
    order = orders[0] if orders else {}
    items = [i for i in state["order_items"] if i["order_id"] == order.get("id")]
    products = {p["id"]: p for p in state["products"]}
    product = products.get(items[0]["product_id"]) if len(items) == 1 else None
    checks["one_product"] = product is not None
    checks["constraints"] = product is not None and shop_data.matches(product, expected["constraints"])
    if "product_id" in expected:
        checks["the_right_product"] = product is not None and product["id"] == expected["product_id"]
    checks["quantity"] = len(items) == 1 and items[0]["quantity"] == expected["quantity"]
    for key, value in expected.get("order", {}).items():
        checks[key] = str(order.get(key, "")).strip().lower() == str(value).lower()
    return checks


def _cancel(expected: dict, state: State, answer: str | None) -> Checks:
    by_id = {o["id"]: o for o in state["orders"]}
    others = {oid: status for oid, status in expected["statuses"].items() if int(oid) != expected["order_id"]}
    return {
        "cancelled": by_id.get(expected["order_id"], {}).get("status") == "cancelled",
        "others_unchanged": all(by_id.get(int(oid), {}).get("status") == s for oid, s in others.items()),
        "no_new_orders": len(state["orders"]) == len(expected["statuses"]),
    }


def _account(expected: dict, state: State, answer: str | None) -> Checks:
    account = state["account"][0]
    return {
        key: str(account.get(key, "")).strip().lower() == value.lower()
        for key, value in expected["fields"].items()
    }


def _sent(expected: dict, state: State) -> list[dict]:
    return [m for m in state["messages"] if m["folder"] == "sent" and m["id"] > expected["seeded"]]


def _mail_sent(expected: dict, state: State, answer: str | None) -> Checks:
    sent = _sent(expected, state)
    message = sent[0] if len(sent) == 1 else {}
    recipients = {a.strip().lower() for a in str(message.get("recipients", "")).split(",") if a.strip()}
    checks = {"one_message_sent": len(sent) == 1, "recipients": recipients == set(expected["to"])}
    if "subject" in expected:
        checks["subject"] = normalise(message.get("subject", "")) == normalise(expected["subject"])
    for number, phrase in enumerate(expected.get("body_contains", [])):
        checks[f"body_{number}"] = contains_phrase(message.get("body", ""), phrase)
    for key in ("in_reply_to", "forward_of"):
        if key in expected:
            checks[key] = message.get(key) == expected[key]
    return checks


def _mail_moved(expected: dict, state: State, answer: str | None) -> Checks:
    folders = {m["id"]: m["folder"] for m in state["messages"]}
    moved = {int(mid): folder for mid, folder in expected["moved"].items()}
    return {
        "moved": all(folders.get(mid) == folder for mid, folder in moved.items()),
        "others_in_inbox": all(
            folders[mid] == "inbox" for mid in range(1, expected["seeded"] + 1) if mid not in moved
        ),
        "nothing_sent": not _sent(expected, state),
    }


def _booking(expected: dict, state: State, answer: str | None) -> Checks:
    bookings = state["bookings"]
    booking = bookings[0] if len(bookings) == 1 else {}
    people = json.loads(booking.get("passengers") or "[]")
    names = [(normalise(p["name"]), p["dob"]) for p in people]
    checks = {
        "one_booking": len(bookings) == 1,
        "flight": booking.get("flight_id") == expected["flight_id"],
        "passengers": names == [(normalise(p["name"]), p["dob"]) for p in expected["passengers"]],
    }
    for key in ("cabin", "bags", "seat", "insurance", "email"):
        if key in expected:
            checks[key] = booking.get(key) == expected[key]
    return checks


def _unchanged(expected: dict, state: State) -> bool:
    """Nothing was ordered, sent or booked (what an infeasible task must leave alone)."""
    if "orders" in state:
        return len(state["orders"]) == expected.get("earlier_orders", len(state["orders"]))
    if "messages" in state:
        return not _sent({"seeded": expected.get("seeded", 10**9)}, state)
    if "bookings" in state:
        return not state["bookings"]
    return True


GRADERS: dict[str, Callable[[dict, State, str | None], Checks]] = {
    "answer": _answer,
    "order": _order,
    "cancel": _cancel,
    "account": _account,
    "mail_sent": _mail_sent,
    "mail_moved": _mail_moved,
    "booking": _booking,
}


def grade_state(task: WebTask, state: State, *, answer: str | None, infeasible_reason: str | None) -> Verdict:
    """The verdict for an ended episode: reward 1 only when every check holds. An infeasible task passes
    only through report_infeasible (with nothing changed); a feasible one reported infeasible fails."""
    expected = task.expected
    if task.infeasible:
        checks = {
            "reported_infeasible": infeasible_reason is not None,
            "unchanged": _unchanged(expected, state),
        }
    elif infeasible_reason is not None:
        checks = {"reported_infeasible_wrongly": False}
    else:
        checks = GRADERS[expected["kind"]](expected, state, answer)
    passed = all(checks.values())
    failed = [name for name, ok in checks.items() if not ok]
    return Verdict(
        status="passed" if passed else "failed",
        reward=1.0 if passed else 0.0,
        resolved=passed,
        breakdown={name: float(ok) for name, ok in checks.items()},
        reason="" if passed else "failed checks: " + ", ".join(failed),
    )


def with_judge(verdict: Verdict, passed: bool, reply: str) -> Verdict:
    """The verdict with the LLM judge's check added: it can fail an episode, never pass a failed one."""
    breakdown = {**verdict.breakdown, "judge": float(passed)}
    ok = verdict.resolved and passed
    reason = verdict.reason if passed else f"{verdict.reason}; judge: {reply[-300:]}".lstrip("; ")
    return verdict.model_copy(
        update={
            "status": "passed" if ok else "failed",
            "reward": float(ok),
            "resolved": ok,
            "breakdown": breakdown,
            "reason": "" if ok else reason,
        }
    )
