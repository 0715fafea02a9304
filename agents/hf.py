"""`hf`: a local `transformers` model as the policy, token in, token out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext
from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import HFGenerator, Sampling
from orchard_envs.agents.hf_models import DEFAULT_MODEL
from orchard_envs.agents.prompt_ledger import PromptLedger, without_end_token


class HFAgent(Agent):
    """Samples from a local model. The prompt ids of each turn extend the last turn's prompt + sample
    wherever the chat template allows (see `prompt_ledger`), so RL trains on exactly what was sampled."""

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
        generator: HFGenerator | None = None,
    ) -> None:
        self.generator = generator or HFGenerator(model, device=device, dtype=dtype)
        self.model = self.generator.name
        self._sampling = Sampling(max_new_tokens, temperature, top_p, seed)
        self.sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            self.sampling["seed"] = seed
        self.chat = ChatFormat(self.generator.tokenizer)
        self.ledger = PromptLedger(self.chat)
        self._turn = 0

    def start(self, context: EpisodeContext) -> None:
        self.ledger.reset()
        self._turn = 0

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        prompt = self.ledger.prompt(messages, tools)
        sampling = self._sampling
        if sampling.seed is not None:  # reproducible, yet not the same draw on every turn
            sampling = replace(sampling, seed=sampling.seed + self._turn)
        self._turn += 1
        generation = self.generator.generate([prompt.token_ids], sampling)[0]
        ends = self.generator.end_token_ids
        body = without_end_token(generation.token_ids, ends)
        reply = self.chat.parse(self.generator.tokenizer.decode(body, skip_special_tokens=False), tools)
        turn = AssistantTurn(
            content=reply.content,
            tool_calls=reply.tool_calls,
            prompt_token_ids=prompt.token_ids,
            token_ids=generation.token_ids,
            logprobs=generation.logprobs,
            finish_reason=generation.finish_reason,
            usage={"prompt_tokens": len(prompt.token_ids), "completion_tokens": len(generation.token_ids)},
        )
        self.ledger.record(turn.message(), generation.token_ids, ends)
        return turn
