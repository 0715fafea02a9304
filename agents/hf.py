"""`hf`: a local `transformers` model as the policy, token in, token out."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import PREFIX_CACHE_MIB, Generation, HFGenerator, Sampling
from orchard_envs.agents.hf_models import DEFAULT_MODEL
from orchard_envs.agents.token_policy import TokenPolicy

if TYPE_CHECKING:
    from orchard_envs.agents.rollout.protocol import RolloutEngine


class HFAgent(TokenPolicy):
    """A local transformers model (default: the embedded SmolLM2-135M-Instruct), token in, token out.

    `generator` is any rollout engine with a `tokenizer`, `end_token_ids` and `name` (an `HFGenerator`
    by default; `VLLMEngine`, `ServerEngine`): the agent is the same whichever one samples. `server`
    (ServerEngine's keywords: base_url, api_key) samples from an orchard-serve of `model` instead; being
    plain options, it is how an agent is rebuilt in another process (a Ray actor of the GRPO trainer)."""

    name = "hf"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        device: str | None = None,
        dtype: str = "auto",
        generator: RolloutEngine | None = None,
        prefix_cache_mib: int = PREFIX_CACHE_MIB,
        server: dict[str, Any] | None = None,
    ) -> None:
        if generator is None and server is not None:
            from orchard_envs.agents.rollout.server_engine import ServerEngine

            generator = ServerEngine(tokenizer=model, **server)
        self.generator = generator or HFGenerator(
            model, device=device, dtype=dtype, prefix_cache_mib=prefix_cache_mib
        )
        super().__init__(ChatFormat(self.generator.tokenizer), self.generator.end_token_ids, seed)
        self.model = self.generator.name
        self._sampling = Sampling(max_new_tokens, temperature, top_p, seed)
        self.sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            self.sampling["seed"] = seed

    def sample(self, prompt_ids: list[int]) -> Generation:
        """Generate one turn from `prompt_ids`, seeded per (run seed, task, trial, turn)."""
        sampling = replace(self._sampling, seed=self.draw_seed())  # per (run seed, task, trial, turn)
        return self.generator.generate([prompt_ids], sampling)[0]
