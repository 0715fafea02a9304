"""Building blocks of the web task families: plan steps (by role and name), seeds and names per split."""

from __future__ import annotations

import random
from typing import Any

from orchard_envs.tasks.web.task import WebTask

SUITE = "web-mini"
# The sites' data differ per seed, so train and test tasks ask about different products, people, flights.
SEEDS = {"train": (0, 1, 2), "test": (10, 11)}
FIRST = {
    "train": ["Ada", "Ben", "Cleo", "Dario", "Elena", "Felix", "Gia", "Hannes"],
    "test": ["Ilse", "Joao", "Kemal", "Leonie", "Marek", "Nadia", "Otto", "Pilar"],
}
LAST = {
    "train": ["Fischer", "Moretti", "Larsen", "Byrne", "Costa", "Nowak"],
    "test": ["Varga", "Sorensen", "Achebe", "Petrov", "Lemaire", "Yilmaz"],
}
STREETS = {
    "train": ["4 Mill Road", "27 Harbour Street", "9 Elm Close", "150 King's Way"],
    "test": ["31 Quarry Lane", "8 Beacon Hill", "62 Salt Row", "5 Willow Court"],
}
TOWNS = {
    "train": [("Bristol", "BS1 4DJ"), ("Leeds", "LS2 7EW"), ("York", "YO1 9QP")],
    "test": [("Norwich", "NR2 1TF"), ("Exeter", "EX4 3SR"), ("Bath", "BA1 1LZ")],
}


def seed_for(rng: random.Random, split: str) -> int:
    """A site seed of the split."""
    return rng.choice(SEEDS[split])


def person(rng: random.Random, split: str) -> str:
    """A full name from the split's pools."""
    return f"{rng.choice(FIRST[split])} {rng.choice(LAST[split])}"


def phrase(templates: dict[str, list[str]], rng: random.Random, split: str, **values: Any) -> str:
    """One of the split's templates, filled."""
    return rng.choice(templates[split]).format(**values)


def click(role: str, name: str) -> dict[str, Any]:
    """Click the control with this role and accessible name."""
    return {"do": "click", "role": role, "name": name}


def fill(role: str, name: str, text: str) -> dict[str, Any]:
    """Replace the text of a field."""
    return {"do": "fill", "role": role, "name": name, "text": text}


def select(name: str, option: str) -> dict[str, Any]:
    """Choose an option (by its visible text) in a labelled <select>."""
    return {"do": "select", "role": "combobox", "name": name, "option": option}


def check(name: str) -> dict[str, Any]:
    """Tick a checkbox."""
    return {"do": "check", "role": "checkbox", "name": name}


def press(key: str) -> dict[str, Any]:
    """Press a key (in the focused element)."""
    return {"do": "press", "key": key}


def goto(path: str) -> dict[str, Any]:
    """Open a path of the task's site."""
    return {"do": "goto", "path": path}


def done(answer: str) -> dict[str, Any]:
    """End with an answer."""
    return {"do": "done", "answer": answer}


def infeasible(reason: str) -> dict[str, Any]:
    """End by reporting the task infeasible."""
    return {"do": "infeasible", "reason": reason}


def make_task(
    family: str,
    split: str,
    index: int,
    *,
    site: str,
    seed: int,
    instruction: str,
    expected: dict[str, Any],
    oracle: list[dict[str, Any]],
    wrong: list[dict[str, Any]],
    start_path: str = "/",
    is_infeasible: bool = False,
) -> WebTask:
    """Assemble a web-mini task."""
    return WebTask(
        task_id=f"{family}-{split}-{index:03d}",
        suite=SUITE,
        split=split,
        family=family,
        instruction=instruction,
        site=site,
        start_path=start_path,
        seed=seed,
        expected=expected,
        infeasible=is_infeasible,
        oracle=tuple(oracle),
        wrong=tuple(wrong),
    )
