"""The registry of task families: name -> how to build one task, and the prompt templates per split.

Each family module exposes `build(rng, split, index) -> ClawTask` and `TEMPLATES` (variant -> split ->
prompt templates); train and test use different templates so test prompts are new surface forms.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from orchard_envs.errors import unknown_name
from orchard_envs.tasks.claw.families import (
    clarification,
    contact_update,
    cross_app,
    document_edit,
    email_triage,
    safety_trap,
    scheduling,
    shop_orders,
    todo_management,
    web_research,
)
from orchard_envs.tasks.claw.task import ClawTask

Builder = Callable[[random.Random, str, int], ClawTask]
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Family:
    """A task family: its builder and its prompt templates per split."""

    name: str
    build: Builder
    templates: dict[str, dict[str, list[str]]]

    def prompt_templates(self, split: str) -> list[str]:
        """Every prompt template this family uses for a split, over all its variants."""
        return [text for variant in self.templates.values() for text in variant[split]]


def _family(module: ModuleType) -> Family:
    return Family(module.__name__.rsplit(".", 1)[-1], module.build, module.TEMPLATES)


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in map(
        _family,
        [
            email_triage,
            scheduling,
            contact_update,
            document_edit,
            todo_management,
            web_research,
            cross_app,
            safety_trap,
            clarification,
            shop_orders,
        ],
    )
}


def get_family(name: str) -> Family:
    """The family; an unknown name is an error listing the known ones."""
    if name not in FAMILIES:
        raise unknown_name("task family", name, FAMILIES)
    return FAMILIES[name]
