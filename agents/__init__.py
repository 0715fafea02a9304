"""Agents (policies): messages + tools -> an assistant turn, with exact token ids where the model has them."""

from __future__ import annotations

from typing import Any

from orchard_envs.registry import construct

AGENTS: dict[str, str] = {
    "hf": "orchard_envs.agents.hf:HFAgent",
    "openai": "orchard_envs.agents.openai_agent:OpenAIAgent",
    "vllm": "orchard_envs.agents.vllm_agent:VLLMAgent",
    "noop": "orchard_envs.agents.scripted:NoopAgent",
    "oracle": "orchard_envs.agents.scripted:OracleAgent",
    "random": "orchard_envs.agents.scripted:RandomAgent",
    "replay": "orchard_envs.agents.scripted:replay_from",
    "web-oracle": "orchard_envs.agents.web_oracle:WebOracleAgent",
    "web-wrong": "orchard_envs.agents.web_oracle:WebWrongAgent",
}


def get_agent(name: str, **options: Any):
    """An agent by registry name ('oracle', 'noop', ...); options go to its constructor."""
    return construct("agent", AGENTS, name, **options)
