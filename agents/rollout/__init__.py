"""Rollout engines: one batching generator that many concurrent episodes (and the RL trainer) sample from.

`RolloutEngine` is the interface: `generate(prompts, sampling) -> list[Generation]` (thread-safe; calls
from many threads are batched together) and `load_weights(state_dict_or_path)` (after each optimizer
step). Implementations: `HFGenerator` (transformers, continuous batching; the default), `VLLMEngine`
(colocated vLLM, when installed) and `ServerEngine` (any OpenAI-compatible server taking token-id prompts,
with orchard-serve's weight-reload hook). Importing this package loads neither torch nor vLLM.
"""

from __future__ import annotations

import importlib
from typing import Any

from orchard_envs.agents.rollout.protocol import RolloutEngine, make_engine

__all__ = ["RolloutEngine", "ServerEngine", "VLLMEngine", "make_engine"]

_LAZY = {
    "ServerEngine": "orchard_envs.agents.rollout.server_engine",
    "VLLMEngine": "orchard_envs.agents.rollout.vllm_engine",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
