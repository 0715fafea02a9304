"""`vllm`: in-process vLLM as the policy (the `vllm` extra), token in, token out like `hf`.

The same agent as `hf` (prompt ledger, per-draw seeds from (run seed, task, trial, turn), token-exact
turns) over another rollout engine: `VLLMEngine`, which clones (one per concurrent episode) share and
which sends their concurrent turns to vLLM as one batch. Tested here against a stand-in `vllm` module
only (tests/test_vllm_agent.py), not on a real engine.
"""

from __future__ import annotations

from typing import Any

from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.hf_models import DEFAULT_MODEL
from orchard_envs.agents.rollout.vllm_engine import VLLMEngine


class VLLMAgent(HFAgent):
    """In-process vLLM (the vllm extra), token in, token out like hf."""

    name = "vllm"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        **engine_options: Any,
    ) -> None:
        engine = VLLMEngine(model, seed=seed, **engine_options)
        super().__init__(
            model,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            generator=engine,
        )
