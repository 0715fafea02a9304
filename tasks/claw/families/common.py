"""Building blocks shared by the task families: people, dates, records, checks, plans and fault retries."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from orchard_envs.tasks.claw.families.pools import FIRST_NAMES, LAST_NAMES, WEEKS
from orchard_envs.tasks.claw.task import OWNER, TOOL_ARGS, ClawTask

ORG_DOMAIN = "acme.com"
FAULTED_EVERY = 5  # one task in five (index % 5 == 1) gets a fault on a call the oracle makes


@dataclass(frozen=True)
class Person:
    """A generated person; their email is derived from the name and domain."""

    first: str
    last: str
    domain: str = ORG_DOMAIN

    @property
    def name(self) -> str:
        """First and last name."""
        return f"{self.first} {self.last}"

    @property
    def email(self) -> str:
        """first.last@domain, lower-cased."""
        return f"{self.first.lower()}.{self.last.lower()}@{self.domain}"


def people(rng: random.Random, split: str, n: int, domain: str = ORG_DOMAIN) -> list[Person]:
    """n people with distinct first and last names from the split's pools."""
    firsts = rng.sample(FIRST_NAMES[split], n)
    lasts = rng.sample(LAST_NAMES[split], n)
    return [Person(first, last, domain) for first, last in zip(firsts, lasts, strict=True)]


def week(rng: random.Random, split: str) -> dt.date:
    """The Monday that is "today" for a task."""
    return rng.choice(WEEKS[split])


def day_text(day: dt.date) -> str:
    """A date as prompts write it: "Tuesday 4 June"."""
    return f"{day:%A} {day.day} {day:%B}"


def at(day: dt.date, hour: int, minute: int = 0) -> str:
    """An ISO 8601 local time without seconds, as the services store them."""
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}"


def template(templates: dict[str, list[str]], rng: random.Random, split: str, **values: Any) -> str:
    """One of the split's templates, drawn from `rng`, filled with `values`."""
    return rng.choice(templates[split]).format(**values)


def message(
    mid: str,
    sender: str,
    subject: str,
    body: str,
    date: str,
    *,
    folder: str = "inbox",
    to: list[str] | None = None,
    cc: list[str] | None = None,
    read: bool = False,
) -> dict[str, Any]:
    """A mail fixture record; by default unread, in the inbox, to the owner."""
    return {
        "id": mid,
        "folder": folder,
        "from": sender,
        "to": to or [OWNER],
        "cc": cc or [],
        "subject": subject,
        "body": body,
        "labels": [],
        "date": date,
        "read": read,
        "thread_id": f"t-{mid}",
    }


def event(eid: str, title: str, start: str, end: str, attendees: list[str], location: str = "") -> dict:
    """A calendar fixture record."""
    return {
        "id": eid,
        "title": title,
        "start": start,
        "end": end,
        "attendees": attendees,
        "location": location,
        "description": "",
    }


def contact(cid: str, person: Person, phone: str, company: str, title: str, notes: str = "") -> dict:
    """A contacts fixture record for `person`."""
    return {
        "id": cid,
        "name": person.name,
        "email": person.email,
        "phone": phone,
        "company": company,
        "title": title,
        "notes": notes,
    }


def document(did: str, title: str, content: str, updated: str, folder: str = "/shared") -> dict:
    """A docs fixture record, its path a slug of the title under `folder`."""
    slug = "-".join(title.lower().replace("—", " ").split())
    return {"id": did, "path": f"{folder}/{slug}.md", "title": title, "content": content, "updated": updated}


def todo(tid: str, title: str, due: str | None, priority: str = "normal", todo_list: str = "work") -> dict:
    """A todo fixture record, not done."""
    return {"id": tid, "title": title, "due": due, "done": False, "priority": priority, "list": todo_list}


def phone_number(rng: random.Random) -> str:
    """A made-up London phone number drawn from `rng`."""
    return f"+44 20 7946 {rng.randrange(1000, 10000)}"


# ---------------------------------------------------------------- checks and plans


def act(tool: str, /, **arguments: Any) -> dict[str, Any]:
    """An oracle (or wrong) action: a tool call with keyword arguments."""
    return {"name": tool, "arguments": arguments}


def finish(answer: str) -> dict[str, Any]:
    """The action that ends an episode with `answer`."""
    return act("finish", answer=answer)


def component(name: str, weight: float, check: dict[str, Any]) -> dict[str, Any]:
    """A scoring component: a part of task completion, of relative `weight`, met when `check` holds."""
    return {"name": name, "weight": weight, "check": check}


def safety(name: str, check: dict[str, Any]) -> dict[str, Any]:
    """A safety check: the episode scores 0 when it fails."""
    return {"name": name, "check": check}


def exists(service: str, collection: str, **where: Any) -> dict[str, Any]:
    """A check that a record matching `where` is in the collection at the end."""
    return {"type": "record_exists", "service": service, "collection": collection, "where": where}


def absent(service: str, collection: str, **where: Any) -> dict[str, Any]:
    """A check that no record matching `where` is in the collection at the end."""
    return {"type": "record_absent", "service": service, "collection": collection, "where": where}


def count(service: str, collection: str, equals: int, **where: Any) -> dict[str, Any]:
    """A check that exactly `equals` records match `where` at the end."""
    return {"type": "count", "service": service, "collection": collection, "where": where, "equals": equals}


def unchanged(service: str, collection: str, *except_ids: str) -> dict[str, Any]:
    """A check that the collection equals its fixture, except the records `except_ids`."""
    check: dict[str, Any] = {"type": "unchanged", "service": service, "collection": collection}
    if except_ids:
        check["except_ids"] = list(except_ids)
    return check


def call_made(tool: str, **where: Any) -> dict[str, Any]:
    """A check that the agent called `tool` (with arguments matching `where`, if given)."""
    return {"type": "call_made", "tool": tool, **({"where": where} if where else {})}


def no_call(tool: str, **where: Any) -> dict[str, Any]:
    """A check that the agent never called `tool` (with arguments matching `where`, if given)."""
    return {"type": "no_call", "tool": tool, **({"where": where} if where else {})}


def contains(text: str) -> dict[str, str]:
    """A `where` condition: the field contains `text`."""
    return {"contains": text}


def with_retry(oracle: list[dict[str, Any]], position: int) -> tuple[list[dict[str, Any]], str, int]:
    """Fault the oracle's call at `position`: returns the plan with that call repeated right after it, the
    call's service and its `seq` (that service's calls before it, reads included, counted from 0)."""
    service = TOOL_ARGS[oracle[position]["name"]].service
    assert service is not None, "only service calls can be faulted"
    seq = sum(TOOL_ARGS[step["name"]].service == service for step in oracle[:position])
    repeated = [*oracle[: position + 1], dict(oracle[position]), *oracle[position + 1 :]]
    return repeated, service, seq


def build_task(
    family: str,
    split: str,
    index: int,
    *,
    prompt: str,
    tools: list[str],
    fixtures: dict[str, Any],
    components: list[dict[str, Any]],
    oracle: list[dict[str, Any]],
    wrong: list[dict[str, Any]],
    fault_at: str | None = None,
    safety_checks: list[dict[str, Any]] | None = None,
    user: dict[str, Any] | None = None,
    category: str | None = None,
    max_turns: int = 20,
) -> ClawTask:
    """Assemble and validate a task. `fault_at` names the oracle tool whose first call is faulted in every
    FAULTED_EVERY-th task; the oracle then retries it at once."""
    faults: dict[str, Any] = {}
    if fault_at is not None and index % FAULTED_EVERY == 1:
        position = next(number for number, step in enumerate(oracle) if step["name"] == fault_at)
        oracle, service, seq = with_retry(oracle, position)
        faults[service] = {"schedule": [seq], "kinds": ["429" if index % 2 else "500"], "seed": index}
    if "finish" not in tools:
        tools = [*tools, "finish"]
    if user is not None and "ask_user" not in tools:
        tools = [*tools[:-1], "ask_user", tools[-1]]
    return ClawTask.model_validate(
        {
            "task_id": f"{family}-{split}-{index:04d}",
            "category": category or family,
            "family": family,
            "split": split,
            "prompt": prompt,
            "tools": tools,
            "fixtures": fixtures,
            "faults": faults,
            "max_turns": max_turns,
            "scoring_components": components,
            "safety_checks": safety_checks or [],
            "user": user,
            "oracle": oracle,
            "wrong": wrong,
        }
    )
