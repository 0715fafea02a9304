"""Travel families: book the cheapest nonstop flight (one passenger, extras), book the earliest afternoon
flight for two, look up a schedule fact, and book where no flight exists (infeasible)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from orchard_envs.tasks.web.families.common import (
    check,
    click,
    done,
    fill,
    infeasible,
    make_task,
    person,
    phrase,
    seed_for,
    select,
)
from orchard_envs.tasks.web.sites import travel_data
from orchard_envs.tasks.web.task import WebTask

SEATS = {"none": "No preference", "window": "Window", "aisle": "Aisle"}
TEMPLATES = {
    "cheapest": {
        "train": [
            "Book the cheapest nonstop {cabin} flight from {origin} to {destination} on {date} for {name}, "
            "born {dob} (contact email {email}). Add {bags} checked bag(s) and a {seat} seat{insurance}.",
            "Find and book the lowest-fare direct {cabin} flight {origin} -> {destination} on {date}. "
            "Passenger: {name}, date of birth {dob}, email {email}; {bags} bag(s), {seat} seat{insurance}.",
        ],
        "test": [
            "I need a nonstop {cabin} ticket {origin} to {destination}, {date}, as cheap as possible. "
            "Traveller "
            "{name} (DOB {dob}), email {email}. Checked bags: {bags}; seat: {seat}{insurance}.",
            "Please reserve the least expensive direct {origin}-{destination} flight on {date} "
            "in {cabin} for "
            "{name} ({dob}, {email}) with {bags} bag(s), {seat} seating{insurance}.",
        ],
    },
    "afternoon": {
        "train": [
            "Book the earliest {origin} to {destination} flight leaving after 12:00 on {date}, economy, for "
            "{name1} (born {dob1}) and {name2} (born {dob2}); contact {email}. No bags, no seat choice.",
            "Two of us fly {origin} -> {destination} on {date}: {name1} ({dob1}) and {name2} ({dob2}). Book "
            "the first economy flight departing after noon; email {email}; no extras.",
        ],
        "test": [
            "Reserve economy seats for {name1} (DOB {dob1}) and {name2} (DOB {dob2}) on the first afternoon "
            "(after 12:00) flight from {origin} to {destination} on {date}. Email {email}; skip extras.",
            "On {date} we need the earliest post-noon flight {origin} to {destination} in economy: {name1} "
            "{dob1}, {name2} {dob2}, contact {email}. Nothing extra.",
        ],
    },
    "lookup": {
        "train": [
            "When does the earliest flight from {origin} to {destination} on {date} depart?",
            "What is the departure time of the first {origin}-{destination} flight on {date}?",
        ],
        "test": [
            "Tell me the earliest departure time from {origin} to {destination} on {date}.",
            "On {date}, at what time does the first flight {origin} to {destination} leave?",
        ],
    },
    "impossible": {
        "train": [
            "Book any economy flight from {origin} to {destination} on {date} for {name} (born {dob}), email "
            "{email}.",
            "Get {name} ({dob}, {email}) on a flight {origin} -> {destination} on {date}.",
        ],
        "test": [
            "Reserve a seat from {origin} to {destination} on {date} for {name}, DOB {dob}, email {email}.",
            "I must fly {origin} to {destination} on {date}; book it for {name} ({dob}), email {email}.",
        ],
    },
}


def _dob(rng: random.Random, adult: bool = True) -> str:
    year = rng.randint(1950, 2000) if adult else rng.randint(2010, 2020)
    return dt.date(year, rng.randint(1, 12), rng.randint(1, 28)).isoformat()


def _email(name: str) -> str:
    return name.lower().replace(" ", ".") + "@example.net"


def _search(
    origin: str, destination: str, date: str, passengers: int, cabin: str, nonstop: bool
) -> list[dict]:
    steps = [
        select("From", origin),
        select("To", destination),
        fill("textbox", "Departure date", date),
        fill("spinbutton", "Passengers", str(passengers)),
        select("Cabin", cabin.title()),
    ]
    return [*steps, *([check("Nonstop only")] if nonstop else []), click("button", "Search flights")]


def _book(
    flight: dict, people: list[tuple[str, str]], email: str, bags: int, seat: str, insurance: bool
) -> list:
    steps: list[dict[str, Any]] = [click("button", f"Select {flight['code']}")]
    for n, (name, dob) in enumerate(people, 1):
        steps += [
            fill("textbox", f"Passenger {n} full name", name),
            fill("textbox", f"Passenger {n} date of birth", dob),
        ]
    steps += [
        fill("textbox", "Contact email", email),
        click("button", "Continue"),
        select("Checked bags", f"{bags} bag{'s' if bags != 1 else ''} (${bags * travel_data.BAG_PRICE})"),
        select("Seat preference", SEATS[seat]),
    ]
    steps += [check("Travel insurance")] if insurance else []
    return [
        *steps,
        click("button", "Continue"),
        click("button", "Confirm booking"),
        click("button", "Pay now"),
        done(f"Booked {flight['code']}."),
    ]


def _pick_day(rng: random.Random, seed: int, keep: Any) -> tuple[str, str, str, list[dict]]:
    flights = travel_data.flights(seed)
    while True:
        origin, destination = rng.choice(travel_data.routes(seed))
        date = rng.choice(travel_data.dates())
        day = [
            f for f in flights if (f["origin"], f["destination"], f["date"]) == (origin, destination, date)
        ]
        if keep(day):
            return origin, destination, date, day


def _cheapest(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    origin, destination, date, day = _pick_day(rng, seed, lambda d: sum(f["stops"] == 0 for f in d) >= 2)
    cabin = rng.choice(["economy", "business"])
    nonstop = sorted((f for f in day if f["stops"] == 0), key=lambda f: f[cabin])
    name, dob = person(rng, split), _dob(rng)
    email, bags, seat, insurance = (
        _email(name),
        rng.randint(0, 2),
        rng.choice(["window", "aisle"]),
        rng.random() < 0.5,
    )
    expected = {
        "kind": "booking",
        "flight_id": nonstop[0]["id"],
        "passengers": [{"name": name, "dob": dob}],
        "cabin": cabin,
        "bags": bags,
        "seat": seat,
        "insurance": int(insurance),
        "email": email,
    }
    instruction = phrase(
        TEMPLATES["cheapest"],
        rng,
        split,
        cabin=cabin,
        origin=origin,
        destination=destination,
        date=date,
        name=name,
        dob=dob,
        email=email,
        bags=bags,
        seat=seat,
        insurance=", with travel insurance" if insurance else ", no insurance",
    )
    search = _search(origin, destination, date, 1, cabin, True)
    sort = [select("Sort by", "Price")]
    return make_task(
        "travel_book_cheapest",
        split,
        index,
        site="travel",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=[*search, *sort, *_book(nonstop[0], [(name, dob)], email, bags, seat, insurance)],
        wrong=[*search, *_book(nonstop[1], [(name, dob)], email, bags, seat, insurance)],
    )


def _afternoon(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    origin, destination, date, day = _pick_day(
        rng, seed, lambda d: sum(f["depart"] > "12:00" for f in d) >= 2
    )
    later = [f for f in day if f["depart"] > "12:00"]
    people = [(person(rng, split), _dob(rng)), (person(rng, split), _dob(rng, adult=rng.random() < 0.5))]
    email = _email(people[0][0])
    expected = {
        "kind": "booking",
        "flight_id": later[0]["id"],
        "cabin": "economy",
        "bags": 0,
        "seat": "none",
        "insurance": 0,
        "email": email,
        "passengers": [{"name": n, "dob": d} for n, d in people],
    }
    instruction = phrase(
        TEMPLATES["afternoon"],
        rng,
        split,
        origin=origin,
        destination=destination,
        date=date,
        name1=people[0][0],
        dob1=people[0][1],
        name2=people[1][0],
        dob2=people[1][1],
        email=email,
    )
    search = _search(origin, destination, date, 2, "economy", False)
    return make_task(
        "travel_book_afternoon",
        split,
        index,
        site="travel",
        seed=seed,
        instruction=instruction,
        expected=expected,
        oracle=[*search, *_book(later[0], people, email, 0, "none", False)],
        wrong=[*search, *_book(later[1], people, email, 0, "none", False)],
    )


def _lookup(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    origin, destination, date, day = _pick_day(rng, seed, lambda d: len(d) >= 2)
    first = day[0]["depart"]
    accept = [first, first.lstrip("0")] if first.startswith("0") else [first]
    instruction = phrase(TEMPLATES["lookup"], rng, split, origin=origin, destination=destination, date=date)
    search = _search(origin, destination, date, 1, "economy", False)
    return make_task(
        "travel_lookup",
        split,
        index,
        site="travel",
        seed=seed,
        instruction=instruction,
        expected={"kind": "answer", "accept": accept, "reject": [f["depart"] for f in day[1:]]},
        oracle=[*search, done(f"It departs at {first}.")],
        wrong=[*search, done(f"It departs at {day[1]['depart']}.")],
    )


def _impossible(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    served = set(travel_data.routes(seed))
    names = travel_data.cities(seed)
    departing = {a for a, _ in served}
    origin, destination = rng.choice(
        [(a, b) for a in names for b in names if a != b and a in departing and (a, b) not in served]
    )
    date, name, dob = rng.choice(travel_data.dates()), person(rng, split), _dob(rng)
    instruction = phrase(
        TEMPLATES["impossible"],
        rng,
        split,
        origin=origin,
        destination=destination,
        date=date,
        name=name,
        dob=dob,
        email=_email(name),
    )
    search = _search(origin, destination, date, 1, "economy", False)
    other = next(f for f in travel_data.flights(seed) if f["origin"] == origin and f["date"] == date)
    wrong = [
        *_search(origin, other["destination"], date, 1, "economy", False),
        *_book(other, [(name, dob)], _email(name), 0, "none", False),
    ]
    return make_task(
        "travel_infeasible",
        split,
        index,
        site="travel",
        seed=seed,
        instruction=instruction,
        expected={"kind": "infeasible"},
        is_infeasible=True,
        wrong=wrong,
        oracle=[*search, infeasible(f"No flights are scheduled from {origin} to {destination}.")],
    )


FAMILIES = {
    "travel_book_cheapest": _cheapest,
    "travel_book_afternoon": _afternoon,
    "travel_lookup": _lookup,
    "travel_infeasible": _impossible,
}
