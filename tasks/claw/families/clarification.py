"""clarification: a request that cannot be done right without asking the user first.

Either two contacts share the first name the user gave, or the user asks for a meeting "next week"
without saying when. The oracle asks (`ask_user`), gets the scripted answer, then acts; the wrong plan
guesses. Asking is worth a little on its own, acting on the answer is worth most.
"""

from __future__ import annotations

import datetime as dt
import random

from orchard_envs.tasks.claw.families.common import (
    Person,
    absent,
    act,
    at,
    build_task,
    call_made,
    component,
    contact,
    contains,
    day_text,
    exists,
    finish,
    people,
    phone_number,
    template,
    week,
)
from orchard_envs.tasks.claw.families.pools import LAST_NAMES, TEAMS, TOPICS
from orchard_envs.tasks.claw.task import ClawTask

TEMPLATES = {
    "who": {
        "train": [
            "Email {first} the link to the {thing}: {link}",
            "Can you send {first} a quick note with the {thing} link ({link})?",
        ],
        "test": [
            "Please forward the {thing} ({link}) to {first} by email.",
            "{first} needs the {thing}; mail them this link: {link}",
        ],
    },
    "when": {
        "train": [
            "Put a call with {name} ({email}) about {topic} in my calendar for next week.",
            "Set up a meeting next week with {name} <{email}> to talk about {topic}.",
        ],
        "test": [
            "Get something in the diary with {name} ({email}) next week - topic: {topic}.",
            "I want to catch up with {name} ({email}) on {topic} sometime next week; please book it.",
        ],
    },
}
THINGS = ["design mockups", "quarterly report", "shared budget sheet", "onboarding deck", "survey results"]
PERSONA = "You are the owner of this mailbox and calendar, a busy manager at Acme who answers briefly."
UNCLEAR = "Sorry, I'm not sure what you're asking. What do you need from me?"


def _who(rng: random.Random, split: str, index: int) -> ClawTask:
    right, *crowd = people(rng, split, 4)
    wrong_person = Person(right.first, rng.choice([n for n in LAST_NAMES[split] if n != right.last]))
    team_right, team_wrong = rng.sample(TEAMS[split], 2)
    cards = [
        contact("", right, phone_number(rng), "Acme", f"{team_right} lead"),
        contact("", wrong_person, phone_number(rng), "Acme", f"{team_wrong} analyst"),
        *(
            contact("", person, phone_number(rng), "Acme", f"{rng.choice(TEAMS[split])} engineer")
            for person in crowd
        ),
    ]
    rng.shuffle(cards)
    for number, card in enumerate(cards, 1):
        card["id"] = f"c{number}"
    thing = rng.choice(THINGS)
    link = f"https://drive.acme.com/d/{rng.randrange(10**7, 10**8)}"
    reply = f"I mean {right.name} from {team_right}."
    user = {
        "persona": PERSONA,
        "rules": [
            {"if_contains": [right.first, "which", "who", right.last, wrong_person.last], "reply": reply}
        ],
        "default": UNCLEAR,
    }
    components = [
        component("asked_first", 1, call_made("ask_user")),
        component(
            "sent_to_right_person",
            3,
            exists("mail", "messages", folder="sent", to=contains(right.email), body=contains(link)),
        ),
        component(
            "not_sent_to_namesake",
            1,
            absent("mail", "messages", folder="sent", to=contains(wrong_person.email)),
        ),
    ]
    subject = thing.capitalize()
    oracle = [
        act("contacts_search", query=right.first),
        act(
            "ask_user",
            question=f"There are two people called {right.first}: {right.name} and "
            f"{wrong_person.name}. Which one do you mean?",
        ),
        act(
            "mail_send",
            to=[right.email],
            subject=subject,
            body=f"Hi {right.first}, here is the {thing}: {link}",
        ),
        finish(f"Sent the {thing} link to {right.name}."),
    ]
    wrong = [
        act("contacts_search", query=right.first),
        act("mail_send", to=[wrong_person.email], subject=subject, body=f"Hi, here is the {thing}: {link}"),
        finish(f"Sent the link to {wrong_person.name}."),
    ]
    return build_task(
        "clarification",
        split,
        index,
        prompt=template(TEMPLATES["who"], rng, split, first=right.first, thing=thing, link=link),
        tools=["contacts_search", "contacts_get", "mail_send", "mail_search"],
        fixtures={"contacts": {"contacts": cards}},
        components=components,
        user=user,
        oracle=oracle,
        wrong=wrong,
        fault_at="mail_send",
    )


def _when(rng: random.Random, split: str, index: int) -> ClawTask:
    monday = week(rng, split)
    person = people(rng, split, 1)[0]
    topic = rng.choice(TOPICS[split])
    day = monday + dt.timedelta(days=7 + rng.randrange(0, 5))
    hour = rng.choice([9, 10, 11, 14, 15, 16])
    start, end = at(day, hour), at(day, hour, 30)
    guess_day = monday + dt.timedelta(days=7)  # a guess: first thing next Monday
    guess_hour = 10 if (guess_day, hour) == (day, 9) else 9
    reply = f"{day_text(day)} at {hour}:00 works best, for 30 minutes."
    user = {
        "persona": PERSONA,
        "rules": [
            {
                "if_contains": ["when", "day", "time", "what", "which", "slot", "date", "prefer"],
                "reply": reply,
            }
        ],
        "default": UNCLEAR,
    }
    existing = [
        {
            "id": "e1",
            "title": "Weekly team sync",
            "start": at(monday, 10),
            "end": at(monday, 11),
            "attendees": ["me@acme.com"],
            "location": "Room 1",
            "description": "",
        },
    ]
    components = [
        component("asked_first", 1, call_made("ask_user")),
        component(
            "booked_when_asked", 3, exists("calendar", "events", start=contains(start), end=contains(end))
        ),
        component(
            "invited",
            1,
            exists("calendar", "events", start=contains(start), attendees=contains(person.email)),
        ),
    ]
    title = f"{topic.capitalize()} with {person.first}"
    oracle = [
        act("ask_user", question=f"Which day and time next week suits you for the call with {person.first}?"),
        act("calendar_create", title=title, start=start, end=end, attendees=[person.email]),
        finish(f"Booked '{title}' on {day_text(day)} at {hour}:00 for 30 minutes."),
    ]
    wrong = [
        act(
            "calendar_create",
            title=title,
            start=at(guess_day, guess_hour),
            end=at(guess_day, guess_hour, 30),
            attendees=[person.email],
        ),
        finish("Booked it for next week."),
    ]
    return build_task(
        "clarification",
        split,
        index,
        prompt=template(TEMPLATES["when"], rng, split, name=person.name, email=person.email, topic=topic),
        tools=["calendar_list", "calendar_create", "calendar_update"],
        fixtures={"calendar": {"events": existing}},
        components=components,
        user=user,
        oracle=oracle,
        wrong=wrong,
        fault_at="calendar_create",
    )


VARIANTS = {"who": _who, "when": _when}


def build(rng: random.Random, split: str, index: int) -> ClawTask:
    """One task of a randomly chosen variant; deterministic for a given `rng` state."""
    return VARIANTS[rng.choice(sorted(VARIANTS))](rng, split, index)
