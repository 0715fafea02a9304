"""The wiki's seeded world: invented countries, cities and people with facts in infoboxes and prose."""

from __future__ import annotations

import random
from typing import Any

COUNTRY_POOL = [
    "Valdoria",
    "Kestrelia",
    "Mirandel",
    "Ostravia",
    "Pellucia",
    "Quorvania",
    "Sundmark",
    "Tavaro",
    "Umberland",
    "Zephyria",
]
CITY_POOL = [
    "Ashford",
    "Belmara",
    "Corvanne",
    "Dunmore",
    "Elstrand",
    "Fenwick",
    "Galvany",
    "Harrowgate",
    "Ilmaren",
    "Jorvik",
    "Kalmont",
    "Lindqvist Harbour",
    "Marrowdale",
    "Northfen",
    "Orlenza",
    "Pevensey",
    "Quillon",
    "Rothmere",
    "Saltcombe",
    "Thornbury",
    "Ulverton",
    "Varnholm",
    "Westerlyn",
    "Yarrowby",
]
PEOPLE_POOL = [
    "Adela Voss",
    "Bertrand Lune",
    "Celestine Marr",
    "Dorian Halvik",
    "Edda Strom",
    "Florin Acker",
    "Greta Mallory",
    "Horatio Penn",
    "Isolde Varga",
    "Jasper Quell",
    "Katrin Olsen",
    "Leopold Ferro",
    "Magda Cruz",
    "Nils Arvid",
    "Octavia Reyes",
    "Piet Lindgren",
]
CURRENCIES = ["crown", "mark", "florin", "thaler", "ducat", "real"]
LANGUAGES = ["Valdorian", "Kestrelian", "Mirandese", "Ostravic", "Pellucian", "Sundish"]
OCCUPATIONS = ["architect", "composer", "physicist", "novelist", "painter", "botanist", "engineer"]
WORKS = [
    "the Glass Bridge",
    "the Northern Symphony",
    "a theory of tides",
    "the novel 'Grey Orchard'",
    "the Sunlit Hall",
    "a catalogue of alpine ferns",
    "the river lock system",
]
RIVERS = ["Amber", "Brisk", "Coldwater", "Dell", "Esk", "Fairway", "Glen"]


def slug(title: str) -> str:
    """The article path segment of a title."""
    return title.replace(" ", "_")


def world(seed: int) -> dict[str, list[dict[str, Any]]]:
    """The seed's countries (each with three cities, the first its capital), cities and people."""
    rng = random.Random(f"wiki:{seed}")
    names = rng.sample(COUNTRY_POOL, 5)
    city_names = rng.sample(CITY_POOL, 15)
    countries, cities = [], []
    for number, name in enumerate(names):
        own = city_names[number * 3 : (number + 1) * 3]
        countries.append(
            {
                "name": name,
                "capital": own[0],
                "population": f"{rng.randint(2, 60)}.{rng.randint(0, 9)} million",
                "area": f"{rng.randint(20, 400) * 1000:,} km2",
                "currency": f"{name} {rng.choice(CURRENCIES)}",
                "language": rng.choice(LANGUAGES),
                "founded": str(rng.randint(1200, 1950)),
            }
        )
        for city in own:
            cities.append(
                {
                    "name": city,
                    "country": name,
                    "population": f"{rng.randint(20, 2500) * 1000:,}",
                    "elevation": f"{rng.randint(2, 1800)} m",
                    "founded": str(rng.randint(800, 1900)),
                    "river": f"{rng.choice(RIVERS)} river",
                }
            )
    people = []
    for name in rng.sample(PEOPLE_POOL, 10):
        city = rng.choice(cities)
        people.append(
            {
                "name": name,
                "born": str(rng.randint(1820, 1990)),
                "birthplace": city["name"],
                "occupation": rng.choice(OCCUPATIONS),
                "known_for": rng.choice(WORKS),
            }
        )
    for city in cities:
        city["mayor"] = rng.choice(people)["name"]
    return {"countries": countries, "cities": cities, "people": people}


def _article(title: str, kind: str, infobox: dict[str, str], body: str, related: list[str]) -> dict[str, Any]:
    import json

    return {
        "slug": slug(title),
        "title": title,
        "kind": kind,
        "infobox": json.dumps(infobox),
        "body": body,
        "related": json.dumps(related),
    }


def rows(seed: int) -> dict[str, list[dict[str, Any]]]:
    """One article per country, city and person."""
    data = world(seed)
    articles = []
    for c in data["countries"]:
        own = [city["name"] for city in data["cities"] if city["country"] == c["name"]]
        box = {
            "Capital": c["capital"],
            "Population": c["population"],
            "Area": c["area"],
            "Currency": c["currency"],
            "Official language": c["language"],
            "Founded": c["founded"],
        }
        body = (
            f"{c['name']} is a country whose capital is {c['capital']}. It was founded in {c['founded']}. "
            f"Its largest cities are {', '.join(own)}."
        )
        articles.append(_article(c["name"], "country", box, body, own))
    for c in data["cities"]:
        box = {
            "Country": c["country"],
            "Population": c["population"],
            "Elevation": c["elevation"],
            "Founded": c["founded"],
            "Mayor": c["mayor"],
            "River": c["river"],
        }
        body = (
            f"{c['name']} is a city in {c['country']} on the {c['river']}. It was founded in {c['founded']} "
            f"and its mayor is {c['mayor']}."
        )
        articles.append(_article(c["name"], "city", box, body, [c["country"], c["mayor"]]))
    for p in data["people"]:
        box = {"Born": p["born"], "Birthplace": p["birthplace"], "Occupation": p["occupation"]}
        body = (
            f"{p['name']} (born {p['born']} in {p['birthplace']}) is a {p['occupation']} best known for "
            f"{p['known_for']}."
        )
        articles.append(_article(p["name"], "person", box, body, [p["birthplace"]]))
    return {"articles": articles}
