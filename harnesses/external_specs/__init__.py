"""The CLI harnesses `external:NAME` knows: how to install each in a sandbox and the command that runs it."""

from __future__ import annotations

__all__ = ["EXTERNAL_HARNESSES"]

# name -> "module:class" of a `CLIHarness` (docs/external-harnesses.md: how to add one)
EXTERNAL_HARNESSES: dict[str, str] = {
    "mini-swe-agent": "orchard_envs.harnesses.external_specs.mini_swe_agent:MiniSweAgent",
    "command": "orchard_envs.harnesses.external_specs.base:CommandHarness",
}
