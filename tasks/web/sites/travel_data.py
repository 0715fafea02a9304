"""The travel site's seeded schedule: cities, served routes and a week of flights, pure functions of the
seed (the task families read the same schedule the site serves)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

CITY_POOL = [
    "Amsterdam",
    "Barcelona",
    "Copenhagen",
    "Dublin",
    "Edinburgh",
    "Florence",
    "Geneva",
    "Hamburg",
    "Istanbul",
    "Krakow",
    "Lisbon",
    "Munich",
    "Oslo",
    "Prague",
    "Seville",
    "Vienna",
    "Warsaw",
    "Zurich",
]
AIRLINES = [("OA", "Orchard Air"), ("SK", "Skylark"), ("NB", "Northbound"), ("CF", "Cloudferry")]
FIRST_DAY = dt.date(2026, 7, 1)
DAYS = 7
BAG_PRICE = 35
INSURANCE_PRICE = 18


def cities(seed: int) -> list[str]:
    """The eight cities this seed's site serves, sorted."""
    return sorted(random.Random(f"travel-cities:{seed}").sample(CITY_POOL, 8))


def routes(seed: int) -> list[tuple[str, str]]:
    """The (origin, destination) pairs with flights: about 60% of the ordered pairs."""
    rng = random.Random(f"travel-routes:{seed}")
    names = cities(seed)
    return [(a, b) for a in names for b in names if a != b and rng.random() < 0.6]


def dates() -> list[str]:
    """The scheduled days, ISO formatted."""
    return [(FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in range(DAYS)]


def flights(seed: int) -> list[dict[str, Any]]:
    """Every flight: four per route and day, distinct departure times and prices."""
    rng = random.Random(f"travel:{seed}")
    rows: list[dict[str, Any]] = []
    for origin, destination in routes(seed):
        base = rng.randint(60, 260)
        for day in dates():
            departures = sorted(rng.sample(range(6 * 60, 22 * 60, 5), 4))
            prices = rng.sample(range(base, base + 220), 4)
            for depart, price in zip(departures, prices, strict=True):
                code, airline = rng.choice(AIRLINES)
                stops = rng.choice([0, 0, 1])
                duration = rng.randint(80, 200) + stops * rng.randint(60, 150)
                arrive = depart + duration
                rows.append(
                    {
                        "id": len(rows) + 1,
                        "code": f"{code}{100 + len(rows)}",
                        "airline": airline,
                        "origin": origin,
                        "destination": destination,
                        "date": day,
                        "depart": f"{depart // 60:02d}:{depart % 60:02d}",
                        "arrive": f"{arrive // 60 % 24:02d}:{arrive % 60:02d}",
                        "duration": duration,
                        "stops": stops,
                        "economy": price,
                        "business": round(price * 2.6),
                    }
                )
    return rows


def rows(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Every table's seeded rows (bookings and drafts start empty)."""
    return {"cities": [{"name": name} for name in cities(seed)], "flights": flights(seed)}


def duration_text(minutes: int) -> str:
    """A duration as the site shows it: '2h 05m'."""
    return f"{minutes // 60}h {minutes % 60:02d}m"
