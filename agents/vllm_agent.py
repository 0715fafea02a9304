"""`vllm`: in-process vLLM as the policy (the `vllm` extra), token in, token out like `hf`.

Prompts go to vLLM as token ids built by the same prompt ledger as `hf`, so both agents record the same
kind of episode; only the sampler differs. Clones (one per concurrent episode) share one `vllm.LLM`, which
is not safe to call from several threads: its `generate` calls take turns under a lock the clones share.
Each request carries its own seed from (run seed, task, trial, turn), as `hf` does. Tested here against a
stand-in `vllm` module only (tests/test_vllm_agent.py), not on a real engine.
"""

from __future__ import annotations

import threading
from typing import Any

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import Generation, end_token_ids
from orchard_envs.agents.hf_models import DEFAULT_MODEL, resolve_model
from orchard_envs.agents.token_policy import TokenPolicy
from orchard_envs.errors import ConfigError


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(
            "agent 'vllm' needs vLLM: `pip install 'orchard-envs[vllm]'` on a CUDA machine, or use agent "
            "'hf' (transformers) or 'openai' against a running `vllm serve`"
        ) from exc
    return vllm


def _configured_eos(path: str) -> int | list[int] | None:
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:  # no generation_config.json: the tokenizer's eos is all there is
        return None


class VLLMAgent(TokenPolicy):
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
        vllm = _import_vllm()
        path = resolve_model(model)
        self.llm = vllm.LLM(model=path, seed=seed or 0, **engine_options)
        self._generate_lock = threading.Lock()  # shared by clones (a shallow copy), as the engine is
        tokenizer = self.llm.get_tokenizer()
        super().__init__(ChatFormat(tokenizer), end_token_ids(tokenizer, _configured_eos(path)), seed)
        self.model = model
        self._sampling_params = vllm.SamplingParams
        self._options = {"max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        self._tokens_prompt = vllm.inputs.TokensPrompt
        self._window = self.llm.llm_engine.model_config.max_model_len
        self.sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            self.sampling["seed"] = seed

    def sample(self, prompt_ids: list[int]) -> Generation:
        """Generate one turn with vLLM; ContextOverflow when the prompt fills the window."""
        if len(prompt_ids) >= self._window:
            raise ContextOverflow(f"the prompt has {len(prompt_ids)} tokens; the window is {self._window}")
        request = self._tokens_prompt(prompt_token_ids=prompt_ids)
        params = self._sampling_params(**self._options, seed=self.draw_seed(), logprobs=0)
        with self._generate_lock:
            output = self.llm.generate([request], params, use_tqdm=False)[0].outputs[0]
        ids = list(output.token_ids)
        logprobs = [step[token].logprob for step, token in zip(output.logprobs or [], ids, strict=False)]
        return Generation(ids, logprobs, output.finish_reason or "stop", len(prompt_ids))
