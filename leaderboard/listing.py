"""`orchard-bench list`: what can be run, each with the first line of its own docstring."""

from __future__ import annotations

import importlib

from orchard_envs.agents import AGENTS
from orchard_envs.envs import ENVIRONMENTS
from orchard_envs.harnesses import HARNESSES
from orchard_envs.leaderboard.suites import BUNDLED


def _summary(target: str) -> str:
    module, _, attr = target.partition(":")
    doc = getattr(importlib.import_module(module), attr).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def listing() -> str:
    """The text of `orchard-bench list`: bundled suites, envs, harnesses and agents."""
    sections = {
        "suites": {name: f"{description} ({env_id})" for name, (env_id, description) in BUNDLED.items()},
        "envs": {env_id: _summary(target) for env_id, target in ENVIRONMENTS.items()},
        "harnesses": {name: _summary(target) for name, target in HARNESSES.items()},
        "agents": {name: _summary(target) for name, target in AGENTS.items()},
    }
    lines = []
    for title, entries in sections.items():
        lines.append(f"{title}:")
        width = max(map(len, entries))
        lines += [f"  {name.ljust(width)}  {text}" for name, text in entries.items()]
    return "\n".join(lines)
