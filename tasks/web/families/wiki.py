"""Wiki families (WebVoyager-style lookups): one fact from an article, a two-hop fact across articles, and
a question about an entity the wiki does not have (infeasible)."""

from __future__ import annotations

import random

from orchard_envs.tasks.web.families.common import click, done, fill, infeasible, make_task, phrase, seed_for
from orchard_envs.tasks.web.sites import wiki_data
from orchard_envs.tasks.web.task import WebTask

FIELDS = {
    "city": [
        ("population", "population"),
        ("elevation", "elevation"),
        ("founded", "founding year"),
        ("mayor", "mayor"),
    ],
    "country": [
        ("capital", "capital"),
        ("currency", "currency"),
        ("language", "official language"),
        ("population", "population"),
    ],
}
TEMPLATES = {
    "fact": {
        "train": ["What is the {label} of {entity}?", "According to the wiki, what is {entity}'s {label}?"],
        "test": ["Look up {entity} and tell me its {label}.", "Find the {label} of {entity} on the wiki."],
    },
    "capital": {
        "train": [
            "What is the population of the capital of {country}?",
            "How many people live in {country}'s capital city?",
        ],
        "test": [
            "Give the population of the city that is the capital of {country}.",
            "{country}'s capital: what is its population?",
        ],
    },
    "birthplace": {
        "train": ["In which country was {name} born?", "Which country is {name}'s birthplace in?"],
        "test": [
            "{name} was born in a city; which country is that city in?",
            "Name the country where {name} was born.",
        ],
    },
    "missing": {
        "train": ["What is the elevation of {city}?", "When was {city} founded?"],
        "test": ["Tell me the population of {city}.", "Who is the mayor of {city}?"],
    },
}


def forms(value: str) -> list[str]:
    """The ways an answer may write a value: "108 m" also as "108 metres", "108m"; "2.5 million" also
    as "2500000"; anything else as it is."""
    number, _, unit = value.partition(" ")
    if unit == "m":
        return [value, f"{number}m", f"{number} metres", f"{number} meters"]
    if unit == "million":
        return [value, str(round(float(number) * 1_000_000))]
    return [value]


def _visit(title: str) -> list[dict]:
    return [fill("searchbox", "Search the wiki", title), click("button", "Search"), click("link", title)]


def _fact(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    world = wiki_data.world(seed)
    kind = rng.choice(["city", "country"])
    pool = world["cities" if kind == "city" else "countries"]
    entity = rng.choice(pool)
    key, label = rng.choice(FIELDS[kind])
    reject = sorted({other[key] for other in pool if other[key] != entity[key]})[:6]
    instruction = phrase(TEMPLATES["fact"], rng, split, entity=entity["name"], label=label)
    plan = _visit(entity["name"])
    return make_task(
        "wiki_fact",
        split,
        index,
        site="wiki",
        seed=seed,
        instruction=instruction,
        expected={"kind": "answer", "accept": forms(entity[key]), "reject": reject},
        oracle=[*plan, done(entity[key])],
        wrong=[*plan, done(reject[0])],
    )


def _two_hop(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    world = wiki_data.world(seed)
    cities = {c["name"]: c for c in world["cities"]}
    if rng.random() < 0.5:
        country = rng.choice(world["countries"])
        capital = cities[country["capital"]]
        answer, hops = capital["population"], [country["name"], capital["name"]]
        reject = [c["population"] for c in world["cities"] if c["name"] != capital["name"]]
        instruction = phrase(TEMPLATES["capital"], rng, split, country=country["name"])
    else:
        someone = rng.choice(world["people"])
        city = cities[someone["birthplace"]]
        answer, hops = city["country"], [someone["name"], city["name"]]
        reject = [c["name"] for c in world["countries"] if c["name"] != city["country"]]
        instruction = phrase(TEMPLATES["birthplace"], rng, split, name=someone["name"])
    plan = [
        *_visit(hops[0]),
        click("link", hops[1]),
    ]  # the second hop: the infobox's link in the related list
    return make_task(
        "wiki_two_hop",
        split,
        index,
        site="wiki",
        seed=seed,
        instruction=instruction,
        expected={"kind": "answer", "accept": forms(answer), "reject": reject},
        oracle=[*plan, done(answer)],
        wrong=[*_visit(hops[0]), done(reject[0])],
    )


def _missing(rng: random.Random, split: str, index: int) -> WebTask:
    seed = seed_for(rng, split)
    world = wiki_data.world(seed)
    known = {c["name"] for c in world["cities"]} | {c["name"] for c in world["countries"]}
    text = " ".join(p["known_for"] + " " + p["name"] for p in world["people"])
    city = rng.choice([c for c in wiki_data.CITY_POOL if c not in known and c not in text])
    search = [fill("searchbox", "Search the wiki", city), click("button", "Search")]
    guess = rng.choice(world["cities"])["elevation"]
    return make_task(
        "wiki_infeasible",
        split,
        index,
        site="wiki",
        seed=seed,
        is_infeasible=True,
        instruction=phrase(TEMPLATES["missing"], rng, split, city=city),
        expected={"kind": "infeasible"},
        oracle=[*search, infeasible(f"The wiki has no article about {city}.")],
        wrong=[*search, done(guess)],
    )


FAMILIES = {"wiki_fact": _fact, "wiki_two_hop": _two_hop, "wiki_infeasible": _missing}
