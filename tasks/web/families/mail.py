"""Webmail families: reply, compose to a contact, forward, move or delete, and look a fact up in a message
(a quarter of the lookups ask about a message that does not exist: infeasible)."""

from __future__ import annotations

import random
from typing import Any

from orchard_envs.tasks.web.families.common import (
    click,
    done,
    fill,
    infeasible,
    make_task,
    phrase,
    seed_for,
    select,
)
from orchard_envs.tasks.web.sites import mail_data
from orchard_envs.tasks.web.task import WebTask

REPLIES = {
    "train": ["{day} at {time} works for me.", "Sorry, I cannot make it; can we move it?"],
    "test": ["Confirmed, see you in the {room}.", "I will join, but only for half an hour."],
}
TEMPLATES = {
    "reply": {
        "train": [
            'Reply to {sender}\'s email about {project} with: "{text}"',
            'Answer {sender}\'s {project} meeting request saying "{text}"',
        ],
        "test": [
            'Write back to {sender} on the {project} sync thread: "{text}"',
            'Respond to the {project} email from {sender} with the words "{text}"',
        ],
    },
    "compose": {
        "train": [
            'Email {name} (the address is in Contacts) with the subject "{subject}" and the text "{body}".',
            'Send a new message to {name}: subject "{subject}", body "{body}".',
        ],
        "test": [
            'Look up {name} in Contacts and mail them; subject "{subject}", message "{body}".',
            'Compose an email to {name} titled "{subject}" that says "{body}".',
        ],
    },
    "forward": {
        "train": [
            "Forward the invoice from {company} to {name}.",
            "Send {name} a forward of the {company} invoice.",
        ],
        "test": [
            "Pass the {company} invoice email on to {name}.",
            "{name} needs the invoice {company} sent me; forward it.",
        ],
    },
    "move": {
        "train": [
            'Move the email "{subject}" to the {folder} folder.',
            'Put the message titled "{subject}" in {folder}.',
        ],
        "test": ['File "{subject}" under {folder}.', 'The email "{subject}" belongs in {folder}; move it.'],
    },
    "lookup": {
        "train": [
            "How much do I owe {company} according to their latest invoice?",
            "What is the amount due on the {company} invoice in my inbox?",
        ],
        "test": [
            "Check my mail: what total does the {company} invoice ask for?",
            "Find the {company} bill in my email and tell me the amount due.",
        ],
    },
}
SUBJECTS = {
    "train": ["Quarterly report", "Lunch on Friday", "Team offsite"],
    "test": ["Budget review", "Conference travel", "Parking permits"],
}
BODIES = {
    "train": ["Please see the attached draft.", "Are you free next week?"],
    "test": ["Can you confirm by Thursday?", "Here is the summary you asked for."],
}


def _open(message: dict) -> list[dict[str, Any]]:
    return [click("link", message["subject"])]


def _reply(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    meetings = [m for m in mail_data.messages(seed) if m["kind"] == "meeting"]
    target, other = rng.sample(meetings, 2)
    text = rng.choice(REPLIES[split]).format(**target["facts"])
    expected = {
        "kind": "mail_sent",
        "seeded": len(mail_data.messages(seed)),
        "to": [target["sender"]],
        "in_reply_to": target["id"],
        "body_contains": [text],
    }

    def plan(message: dict) -> list[dict[str, Any]]:
        return [
            *_open(message),
            click("link", "Reply"),
            fill("textbox", "Message", text),
            click("button", "Send"),
            done("Replied."),
        ]

    instruction = phrase(
        TEMPLATES["reply"],
        rng,
        split,
        sender=target["sender_name"],
        project=target["facts"]["project"],
        text=text,
    )
    return make_task(
        "mail_reply",
        split,
        index,
        site="mail",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=plan(target),
        wrong=plan(other),
        start_path="/folder/inbox",
    )


def _compose(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    target, other = rng.sample(mail_data.contacts(seed), 2)
    subject, body = rng.choice(SUBJECTS[split]), rng.choice(BODIES[split])
    expected = {
        "kind": "mail_sent",
        "seeded": len(mail_data.messages(seed)),
        "to": [target["email"]],
        "subject": subject,
        "body_contains": [body],
    }

    def plan(contact: dict) -> list[dict[str, Any]]:
        return [
            click("link", "Contacts"),
            click("link", "Compose"),
            fill("textbox", "To", contact["email"]),
            fill("textbox", "Subject", subject),
            fill("textbox", "Message", body),
            click("button", "Send"),
            done("Sent."),
        ]

    instruction = phrase(TEMPLATES["compose"], rng, split, name=target["name"], subject=subject, body=body)
    return make_task(
        "mail_compose",
        split,
        index,
        site="mail",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=plan(target),
        wrong=plan(other),
        start_path="/folder/inbox",
    )


def _forward(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    invoices = [m for m in mail_data.messages(seed) if m["kind"] == "invoice"]
    target, other = rng.sample(invoices, 2)
    contact = rng.choice(mail_data.contacts(seed))
    expected = {
        "kind": "mail_sent",
        "seeded": len(mail_data.messages(seed)),
        "to": [contact["email"]],
        "forward_of": target["id"],
    }

    def plan(message: dict) -> list[dict[str, Any]]:
        return [
            *_open(message),
            click("link", "Forward"),
            fill("textbox", "To", contact["email"]),
            click("button", "Send"),
            done("Forwarded."),
        ]

    instruction = phrase(
        TEMPLATES["forward"], rng, split, company=target["facts"]["company"], name=contact["name"]
    )
    return make_task(
        "mail_forward",
        split,
        index,
        site="mail",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=plan(target),
        wrong=plan(other),
        start_path="/folder/inbox",
    )


def _move(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    target, other = rng.sample(mail_data.messages(seed), 2)
    folder = rng.choice(["Archive", "Trash"])
    expected = {
        "kind": "mail_moved",
        "seeded": len(mail_data.messages(seed)),
        "moved": {str(target["id"]): folder.lower()},
    }

    def plan(message: dict) -> list[dict[str, Any]]:
        act = (
            [click("button", "Delete")]
            if folder == "Trash"
            else [select("Move to", folder), click("button", "Move")]
        )
        return [*_open(message), *act, done("Moved.")]

    instruction = phrase(TEMPLATES["move"], rng, split, subject=target["subject"], folder=folder)
    return make_task(
        "mail_move",
        split,
        index,
        site="mail",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=plan(target),
        wrong=plan(other),
        start_path="/folder/inbox",
    )


def _lookup(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    invoices = [m for m in mail_data.messages(seed) if m["kind"] == "invoice"]
    target = rng.choice(invoices)
    reject = [m["facts"]["amount"] for m in invoices if m is not target]
    missing = index % 4 == 3
    company = (
        rng.choice(
            [
                c
                for c in mail_data.COMPANIES
                if c not in {m["facts"]["company"] for m in invoices}
                and not any(c in m["subject"] for m in mail_data.messages(seed))
            ]
        )
        if missing
        else target["facts"]["company"]
    )
    search = [fill("searchbox", "Search mail", company.split()[0]), click("button", "Search")]
    instruction = phrase(TEMPLATES["lookup"], rng, split, company=company)
    if missing:
        return make_task(
            "mail_lookup",
            split,
            index,
            site="mail",
            seed=seed,
            instruction=instruction,
            expected={"kind": "infeasible", "seeded": len(mail_data.messages(seed))},
            is_infeasible=True,
            start_path="/folder/inbox",
            oracle=[*search, infeasible(f"There is no invoice from {company} in the mailbox.")],
            wrong=[*search, done(f"${reject[0]}")],
        )
    expected = {"kind": "answer", "accept": [target["facts"]["amount"]], "reject": reject}
    return make_task(
        "mail_lookup",
        split,
        index,
        site="mail",
        seed=seed,
        instruction=instruction,
        expected=expected,
        start_path="/folder/inbox",
        oracle=[*search, *_open(target), done(f"${target['facts']['amount']}")],
        wrong=[*search, *_open(target), done(f"${reject[0]}")],
    )


FAMILIES = {
    "mail_reply": _reply,
    "mail_compose": _compose,
    "mail_forward": _forward,
    "mail_move": _move,
    "mail_lookup": _lookup,
}
