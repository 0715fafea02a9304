"""Batched sampling from a local `transformers` causal LM, returning exact token ids and their logprobs.

Shared by the `hf` agent and `orchard-serve`. Prompts go in as token ids (never text), so what the model is
conditioned on is exactly what the episode records. Logprobs are under the model's own distribution
(temperature 1, no top-p), as vLLM reports them by default; trainers recompute them anyway.

Generation goes through the rollout engine (`rollout.batching`): concurrent callers (the `-j N` episode
threads of `orchard-bench`, orchard-serve's requests, the GRPO trainer's rollouts) share each forward pass.
`batching=False`, or a model whose cache the engine cannot merge (sliding-window layers), uses the older
path instead: one `model.generate` call at a time, under a lock. A generator loaded from a checkpoint keeps
finished turns' keys and values (`prefix_cache_mib`, `rollout.prefix_cache`), so a turn that extends an
earlier one prefills only its new tokens; `prefix_cache_mib=0` turns that off.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf_models import DEFAULT_MODEL, resolve_model
from orchard_envs.errors import ConfigError

# Keys and values of finished turns kept for the next turn's prefill (rollout.prefix_cache); 0 turns it off.
PREFIX_CACHE_MIB = 1024


@dataclass(frozen=True)
class Sampling:
    """How to sample one generation; temperature 0 is greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(
                f"temperature must be >= 0 and top_p in (0, 1]; got {self.temperature}, {self.top_p}"
            )


@dataclass
class Generation:
    """One sampled completion: token ids with their logprobs, and why it stopped."""

    token_ids: list[int]  # as sampled, the end-of-turn token included when the model emitted one
    logprobs: list[float]
    finish_reason: str  # "stop" (end token or stop string) or "length"
    prompt_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class HFGenerator:
    """One loaded model, a `RolloutEngine`. Thread-safe: concurrent callers are batched together."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str | None = None,
        dtype: str = "auto",
        *,
        batching: bool = True,
        max_rows: int = 64,
        prefix_cache_mib: int = PREFIX_CACHE_MIB,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        path = resolve_model(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"auto": torch.bfloat16 if self.device.startswith("cuda") else torch.float32}.get(
            dtype, getattr(torch, dtype, None)
        )
        if torch_dtype is None:
            raise ConfigError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(self.device)
        except (OSError, ValueError) as exc:  # missing files; a folder that holds no model
            raise ConfigError(
                f"cannot load model {model!r}: {exc}. Pass a local checkpoint directory or a hub id that is "
                "already in the Hugging Face cache"
            ) from exc
        loaded.eval()
        eos = end_token_ids(tokenizer, loaded.generation_config.eos_token_id)
        self._adopt(loaded, tokenizer, eos, batching=batching, max_rows=max_rows, prefix_mib=prefix_cache_mib)

    @classmethod
    def from_loaded(
        cls, model: Any, tokenizer: Any, end_ids: set[int], name: str, *, batching: bool = True
    ) -> HFGenerator:
        """A generator around a model already in memory (the policy an RL trainer is updating): sampling
        sees every optimizer step at once, with no copy of the weights. The caller switches eval/train.
        No prefix cache: the weights change underneath it, which would leave kept keys and values stale."""
        generator = cls.__new__(cls)
        generator.name = name
        generator.device = str(next(model.parameters()).device)
        generator._adopt(model, tokenizer, set(end_ids), batching=batching)
        return generator

    def _adopt(
        self,
        model: Any,
        tokenizer: Any,
        end_ids: set[int],
        *,
        batching: bool = True,
        max_rows: int = 64,
        prefix_mib: int = 0,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.context_tokens = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        self.end_token_ids = end_ids
        # generate() fills every field we leave unset from the checkpoint's generation_config (a repetition
        # penalty, top_k, min_p): the tokens would not come from the distribution we record. Neutral instead.
        from transformers import GenerationConfig

        self.checkpoint_generation_config = self.model.generation_config
        self.model.generation_config = GenerationConfig()
        pad = self.tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else min(self.end_token_ids)
        self._lock = threading.Lock()
        self.engine: Any = None
        if batching:
            from orchard_envs.agents.rollout.batching import BatchingEngine, supports

            if supports(self.model):
                self.engine = BatchingEngine(self, max_rows=max_rows, prefix_cache_bytes=prefix_mib << 20)

    def generate(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """One sample per prompt; calls from several threads share batches (see `rollout.batching`)."""
        if self.engine is not None:
            return self.engine.generate(prompts, sampling)
        return self.generate_locked(prompts, sampling)

    def load_weights(self, state_dict_or_path: Any) -> int:
        """New weights (a state dict or a checkpoint folder), applied between batches; the new version."""
        if self.engine is not None:
            return self.engine.load_weights(state_dict_or_path)
        from orchard_envs.agents.rollout.weights import copy_into

        with self._lock:
            copy_into(self.model, state_dict_or_path)
            self.weights_version = getattr(self, "weights_version", 0) + 1
        return self.weights_version

    def generate_locked(self, prompts: list[list[int]], sampling: Sampling) -> list[Generation]:
        """The pre-engine path: one left-padded `model.generate` batch per call, calls taking turns."""
        import torch

        longest = max(len(prompt) for prompt in prompts)
        if longest >= self.context_tokens:
            raise ContextOverflow(
                f"the prompt has {longest} tokens; the model's context window is {self.context_tokens}"
            )
        budget = min(sampling.max_new_tokens, self.context_tokens - longest)
        input_ids = torch.full((len(prompts), longest), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for row, prompt in enumerate(prompts):
            input_ids[row, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention[row, longest - len(prompt) :] = 1
        config = self._generation_config(sampling, budget)
        with self._lock, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
            )
        sampled = out.sequences[:, longest:].tolist()
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1)  # (batch, steps, vocab)
        results = []
        for row, (prompt, ids) in enumerate(zip(prompts, sampled, strict=True)):
            ended = next((i for i, t in enumerate(ids) if t in self.end_token_ids), None)
            if ended is not None:
                ids = ids[: ended + 1]
            stopped = self._stop_at(ids, sampling.stop)
            if stopped is not None:
                ids, ended = ids[:stopped], stopped
            finish = "stop" if ended is not None else "length"
            chosen = logprobs[row, torch.arange(len(ids)), torch.tensor(ids, dtype=torch.long)]
            results.append(Generation(ids, chosen.tolist(), finish, len(prompt)))
        return results

    def _generation_config(self, sampling: Sampling, budget: int) -> Any:
        from transformers import GenerationConfig

        chosen = {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
        return GenerationConfig(
            **(chosen if sampling.temperature > 0 else {}),
            do_sample=sampling.temperature > 0,
            max_new_tokens=budget,
            eos_token_id=sorted(self.end_token_ids),
            pad_token_id=self.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
        )

    def _stop_at(self, ids: list[int], stops: tuple[str, ...]) -> int | None:
        """How many tokens it takes to complete the first stop string (checked after sampling, so rows
        of a batch never see padding mistaken for sampled tokens)."""
        if not stops:
            return None
        text = self.tokenizer.decode(ids, skip_special_tokens=False)
        if not any(stop in text for stop in stops):
            return None
        for length in range(1, len(ids) + 1):
            prefix = self.tokenizer.decode(ids[:length], skip_special_tokens=False)
            if any(stop in prefix for stop in stops):
                return length
        return None


def checkpoint_eos(path: str) -> int | list[int] | None:
    """The eos ids a checkpoint folder's generation config names (None without one), read without
    loading the model: for engines whose model lives elsewhere (vLLM, a server) and for the trainers."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's eos is all there is
        return None


def end_token_ids(tokenizer: Any, configured: int | list[int] | None) -> set[int]:
    """Every id that ends a turn: the generation config's eos ids plus the tokenizer's eos."""
    ids = set(configured if isinstance(configured, list) else [configured] if configured is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if not ids:
        raise ConfigError("the model defines no end-of-sequence token; set generation_config.eos_token_id")
    return ids
