"""Harnesses: the scaffold between a model and an env (prompt, tool exposure, parsing, observations)."""

from __future__ import annotations

from typing import Any

from orchard_envs.registry import construct

HARNESSES: dict[str, str] = {
    "tool-calling": "orchard_envs.harnesses.tool_calling:ToolCallingHarness",
    "react": "orchard_envs.harnesses.text:ReactHarness",
    "bash-only": "orchard_envs.harnesses.text:BashOnlyHarness",
    "gui": "orchard_envs.harnesses.gui:GuiHarness",
}


def get_harness(name: str, **options: Any):
    """A harness by registry name ('tool-calling', ..., or 'external:NAME' for an agent CLI run in the
    sandbox: harnesses/external.py); options go to its constructor."""
    if name.startswith("external:"):
        from orchard_envs.harnesses.external import ExternalHarness

        return ExternalHarness(name.partition(":")[2], **options)
    return construct("harness", HARNESSES, name, **options)
