"""The webmail's seeded mailbox: contacts and messages with the facts task families ask about."""

from __future__ import annotations

import random
from typing import Any

OWNER = "sam.rivera@orchardmail.test"
FIRST = [
    "Alice",
    "Bruno",
    "Carmen",
    "Dmitri",
    "Esther",
    "Farid",
    "Gwen",
    "Hiro",
    "Ingrid",
    "Jamal",
    "Kira",
    "Lars",
    "Mina",
    "Nikolai",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Stefan",
    "Tara",
    "Umar",
    "Vera",
]
LAST = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Silva",
    "Novak",
    "Haddad",
    "Keller",
    "Duarte",
    "Kowalski",
    "Osei",
    "Brandt",
    "Castillo",
    "Ivanova",
    "Mehta",
    "Nakamura",
    "Quinn",
    "Romero",
    "Sato",
    "Weber",
]
COMPANIES = [
    "Brightwater Utilities",
    "Kestrel Telecom",
    "Northwind Insurance",
    "Pinecrest Rentals",
    "Larkspur Software",
    "Bluegate Logistics",
    "Redfern Dental",
    "Silverline Gym",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
ROOMS = ["Atrium", "Birch room", "Cedar room", "Library", "Room 4.12", "Studio B"]
PROJECTS = ["Apollo", "Beacon", "Cobalt", "Delta", "Ember", "Falcon", "Granite", "Harbor"]


def contacts(seed: int) -> list[dict[str, Any]]:
    """Twelve contacts with distinct names; emails derived from the names."""
    rng = random.Random(f"mail-contacts:{seed}")
    firsts, lasts = rng.sample(FIRST, 12), rng.sample(LAST, 12)
    return [
        {
            "id": n + 1,
            "name": f"{f} {last}",
            "email": f"{f.lower()}.{last.lower()}@example.org",
            "company": rng.choice(COMPANIES),
        }
        for n, (f, last) in enumerate(zip(firsts, lasts, strict=True))
    ]


def _meeting(rng: random.Random, person: dict, project: str) -> dict[str, Any]:
    day = rng.choice(DAYS)
    time = f"{rng.randint(9, 16)}:{rng.choice(['00', '15', '30', '45'])}"
    room = rng.choice(ROOMS)
    return {
        "kind": "meeting",
        "sender_name": person["name"],
        "sender": person["email"],
        "subject": f"{project} sync on {day}",
        "body": f"Hi Sam,\n\nCan we meet about {project} on {day} at {time} in the {room}?\n\n"
        f"Best,\n{person['name'].split()[0]}",
        "facts": {"time": time, "room": room, "day": day, "project": project},
    }


def _invoice(rng: random.Random, company: str) -> dict[str, Any]:
    number = f"INV-{rng.randint(10000, 99999)}"
    amount = f"{rng.randint(40, 900)}.{rng.randint(0, 99):02d}"
    due = f"2026-07-{rng.randint(1, 28):02d}"
    slug = company.lower().split()[0]
    return {
        "kind": "invoice",
        "sender_name": company,
        "sender": f"billing@{slug}.example.com",
        "subject": f"Invoice {number} from {company}",
        "body": f"Dear customer,\n\nInvoice {number} is ready. Amount due: ${amount}. Please pay by {due}."
        f"\n\n{company} billing",
        "facts": {"amount": amount, "due": due, "number": number, "company": company},
    }


def _shipment(rng: random.Random, company: str) -> dict[str, Any]:
    code = f"{rng.choice('ABCDEFGHJK')}{rng.choice('LMNPRSTUVW')}{rng.randint(1000000, 9999999)}"
    slug = company.lower().split()[0]
    return {
        "kind": "shipment",
        "sender_name": f"{company} shipping",
        "sender": f"noreply@{slug}.example.com",
        "subject": f"Your {company} parcel is on its way",
        "body": f"Good news! Your parcel has shipped. Tracking code: {code}.",
        "facts": {"code": code, "company": company},
    }


def messages(seed: int) -> list[dict[str, Any]]:
    """The inbox (and a few sent and archived messages), newest first by date; subjects unique."""
    rng = random.Random(f"mail:{seed}")
    people = contacts(seed)
    companies = rng.sample(COMPANIES, 6)
    made = [
        _meeting(rng, person, project)
        for person, project in zip(rng.sample(people, 6), rng.sample(PROJECTS, 6), strict=True)
    ]
    made += [_invoice(rng, company) for company in companies[:3]]
    made += [_shipment(rng, company) for company in companies[3:]]
    for person in rng.sample(people, 4):
        made.append(
            {
                "kind": "note",
                "sender_name": person["name"],
                "sender": person["email"],
                "subject": f"Photos from {rng.choice(['the offsite', 'the wedding', 'the trip', 'Saturday'])}"
                f" ({person['name'].split()[0]})",
                "body": "Here are the photos I promised. Enjoy!",
                "facts": {},
            }
        )
    rng.shuffle(made)
    rows = []
    for number, message in enumerate(made, 1):
        rows.append(
            {
                **message,
                "id": number,
                "folder": "inbox",
                "recipients": OWNER,
                "cc": "",
                "date": f"2026-06-{28 - number:02d} {rng.randint(7, 19):02d}:{rng.randint(0, 59):02d}",
                "read": int(number > 6),
                "in_reply_to": None,
                "forward_of": None,
            }
        )
    return rows


def rows(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Every table's seeded rows."""
    columns = (
        "id",
        "folder",
        "sender_name",
        "sender",
        "recipients",
        "cc",
        "subject",
        "body",
        "date",
        "read",
        "in_reply_to",
        "forward_of",
    )
    return {
        "contacts": contacts(seed),
        "messages": [{key: message[key] for key in columns} for message in messages(seed)],
    }
