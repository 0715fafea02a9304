"""The interface between rollouts (agents, the GRPO trainer) and whatever samples tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from orchard_envs.errors import ConfigError

if TYPE_CHECKING:
    from orchard_envs.agents.hf_backend import Generation, Sampling

ENGINES = ("hf", "vllm", "server")


@runtime_checkable
class RolloutEngine(Protocol):
    """Samples token ids with their logprobs; one instance serves every concurrent episode."""

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """One sample per prompt (token ids in, token ids out). Thread-safe: concurrent calls share
        batches. Raises `ContextOverflow` (or `ValueError` for a malformed prompt) for this call only."""
        ...

    def load_weights(self, state_dict_or_path: dict[str, Any] | str | Path) -> int:
        """Replace the policy's weights (a state dict with the model's own names, or a checkpoint folder)
        between batches; returns the new weights version (recorded in `Generation.extra`)."""
        ...


def make_engine(kind: str = "hf", model: str | None = None, **options: Any) -> RolloutEngine:
    """An engine by name: `hf` (HFGenerator), `vllm` (VLLMEngine) or `server` (ServerEngine: pass
    `base_url`). `model` is the checkpoint (hf, vllm) or the served model's name (server)."""
    if kind == "hf":
        from orchard_envs.agents.hf_backend import HFGenerator

        return HFGenerator(model, **options) if model else HFGenerator(**options)
    if kind == "vllm":
        from orchard_envs.agents.rollout.vllm_engine import VLLMEngine

        return VLLMEngine(model, **options) if model else VLLMEngine(**options)
    if kind == "server":
        from orchard_envs.agents.rollout.server_engine import ServerEngine

        return ServerEngine(model=model, **options)
    raise ConfigError(f"unknown rollout engine {kind!r}; known: {', '.join(ENGINES)}")
