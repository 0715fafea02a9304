"""contact_update: look a person up in the address book and update their card (new job, or new number).

The address book holds a namesake (same first name, other surname), so the right card is found by the
full name; the wrong plans update the namesake, or add a duplicate card instead of editing.
"""

from __future__ import annotations

import random

from orchard_envs.tasks.claw.families.common import (
    ORG_DOMAIN,
    Person,
    act,
    build_task,
    component,
    contact,
    contains,
    count,
    exists,
    finish,
    people,
    phone_number,
    template,
    unchanged,
)
from orchard_envs.tasks.claw.families.pools import COMPANIES, LAST_NAMES, TEAMS
from orchard_envs.tasks.claw.task import ClawTask

TEMPLATES = {
    "job": {
        "train": [
            "{name} has moved to {company} as {title}. Please update the contact card: new email {email}, "
            "new company and job title.",
            "Heads up: {name} now works at {company} ({title}) and uses {email}. Can you fix their entry in "
            "my contacts?",
        ],
        "test": [
            "Update my address book for {name}: they changed jobs, they're {title} at {company} now, and "
            "the address to use is {email}.",
            "{name} left for {company}. Record the new role ({title}) and their new email, {email}, on their "
            "contact.",
        ],
    },
    "phone": {
        "train": [
            "{name} got a new phone number: {phone}. Update their contact and remind me which company "
            "they're with.",
            "Please change the phone number on {name}'s card to {phone}, then tell me where they work.",
        ],
        "test": [
            "The number for {name} is now {phone}; correct it in my contacts. Also, what company is "
            "{name} at again?",
            "Fix {name}'s phone in the address book ({phone} is the new one) and remind me of their "
            "employer.",
        ],
    },
}
ROLES = [
    "Account Manager",
    "Engineering Lead",
    "Head of Operations",
    "Product Designer",
    "Data Analyst",
    "Procurement Officer",
]


def build(rng: random.Random, split: str, index: int) -> ClawTask:
    """One task; deterministic for a given `rng` state (the suites are generated from seeds)."""
    variant = rng.choice(sorted(TEMPLATES))
    crowd = people(rng, split, 5)
    target = crowd[0]
    namesake = Person(target.first, rng.choice([n for n in LAST_NAMES[split] if n != target.last]))
    companies = rng.sample(COMPANIES[split], 4)
    cards = []
    for person, (company, domain) in zip(
        [target, namesake, *crowd[1:]], [*companies, *companies][:6], strict=True
    ):
        outside = person is target or rng.random() < 0.5  # the target's company is a plain name
        card_person = Person(person.first, person.last, domain if outside else ORG_DOMAIN)
        employer = company if outside else f"Acme ({rng.choice(TEAMS[split])})"
        cards.append(contact("", card_person, phone_number(rng), employer, rng.choice(ROLES)))
    rng.shuffle(cards)
    for number, card in enumerate(cards, 1):
        card["id"] = f"c{number}"
    card = next(c for c in cards if c["name"] == target.name)
    other = next(c for c in cards if c["name"] == namesake.name)
    cid, oid = card["id"], other["id"]

    single = component("single_card", 1, count("contacts", "contacts", 1, name=contains(target.name)))
    untouched = component("other_cards_untouched", 1, unchanged("contacts", "contacts", cid))
    if variant == "job":
        new_company, new_domain = rng.choice([c for c in COMPANIES[split] if c not in companies])
        new_title = rng.choice([role for role in ROLES if role != card["title"]])
        new_email = Person(target.first, target.last, new_domain).email
        prompt = template(
            TEMPLATES["job"],
            rng,
            split,
            name=target.name,
            company=new_company,
            title=new_title,
            email=new_email,
        )
        changes = {"email": new_email, "company": new_company, "title": new_title}
        components = [
            component("new_email", 2, exists("contacts", "contacts", id=cid, email=contains(new_email))),
            component(
                "new_company", 1, exists("contacts", "contacts", id=cid, company=contains(new_company))
            ),
            component("new_title", 1, exists("contacts", "contacts", id=cid, title=contains(new_title))),
            single,
            untouched,
        ]
        answer = f"Updated {target.name}: {new_title} at {new_company}, {new_email}."
        wrong_answer = "Done, the card is updated."
    else:
        new_phone = phone_number(rng)
        prompt = template(TEMPLATES["phone"], rng, split, name=target.name, phone=new_phone)
        changes = {"phone": new_phone}
        components = [
            component("new_phone", 3, exists("contacts", "contacts", id=cid, phone=contains(new_phone))),
            component("told_company", 1, {"type": "answer_contains", "all": [card["company"]]}),
            single,
            untouched,
        ]
        answer = f"Updated the phone number of {target.name}; they work at {card['company']}."
        wrong_answer = f"Updated. {target.first} works at {other['company']}."
    oracle = [
        act("contacts_search", query=target.name),
        act("contacts_update", id=cid, **changes),
        finish(answer),
    ]
    if rng.random() < 0.5:  # first search hit for the first name: the namesake
        wrong = [act("contacts_search", query=target.first), act("contacts_update", id=oid, **changes)]
    else:  # a fresh card instead of an edit
        wrong = [act("contacts_create", name=target.name, **changes)]
    wrong.append(finish(wrong_answer))
    return build_task(
        "contact_update",
        split,
        index,
        prompt=prompt,
        tools=["contacts_search", "contacts_get", "contacts_update", "contacts_create"],
        fixtures={"contacts": {"contacts": cards}},
        components=components,
        oracle=oracle,
        wrong=wrong,
        fault_at="contacts_update",
    )
