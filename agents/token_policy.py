"""The shared turn loop of local policies (`hf`, `vllm`): ledger prompt ids in, exact sampled ids out."""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Any

from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext
from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.agents.hf_backend import Generation
from orchard_envs.agents.prompt_ledger import PromptLedger, without_end_token
from orchard_envs.agents.sampling_seeds import EpisodeDraws


class TokenPolicy(Agent):
    """Subclasses set `chat`, `end_ids` and implement `sample`; the prompt ids of each turn extend the last
    turn's prompt + sample wherever the chat template allows (see `prompt_ledger`). `run_seed` is the
    agent's `seed` option; `draw_seed()` is the seed of the turn being sampled (None when unseeded)."""

    chat: ChatFormat
    end_ids: set[int]

    def __init__(self, chat: ChatFormat, end_ids: set[int], run_seed: int | None = None) -> None:
        self.chat, self.end_ids = chat, end_ids
        self.ledger = PromptLedger(chat)
        self.turn_index = 0
        self.run_seed = run_seed
        self.draws = EpisodeDraws(run_seed)

    def clone(self) -> TokenPolicy:
        """A copy sharing the model but with its own prompt ledger, for a concurrent episode."""
        twin = copy.copy(self)
        twin.ledger = PromptLedger(self.chat)  # the model is shared; the episode's prompts are not
        return twin

    def start(self, context: EpisodeContext) -> None:
        """Reset the ledger, turn count and seed draws for a new episode."""
        self.ledger.reset()
        self.turn_index = 0
        self.draws = context.draws(self.run_seed)

    def draw_seed(self) -> int | None:
        """The seed of this turn's draw, from (run seed, task, trial, turn): see `sampling_seeds`."""
        return self.draws.seed(self.turn_index)

    @abstractmethod
    def sample(self, prompt_ids: list[int]) -> Generation:
        """Generate one turn from the prompt's token ids; the backend implements it."""

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """Sample a turn and parse it with the chat template; the ledger keeps the sampled tokens."""
        prompt = self.ledger.prompt(messages, tools)
        generation = self.sample(prompt.token_ids)
        self.turn_index += 1
        ids = generation.token_ids
        text = self.chat.tokenizer.decode(without_end_token(ids, self.end_ids), skip_special_tokens=False)
        reply = self.chat.parse(text, tools)
        turn = AssistantTurn(
            content=reply.content,
            tool_calls=reply.tool_calls,
            prompt_token_ids=prompt.token_ids,
            token_ids=ids,
            logprobs=generation.logprobs if len(generation.logprobs) == len(ids) else None,
            finish_reason=generation.finish_reason,
            usage={"prompt_tokens": len(prompt.token_ids), "completion_tokens": len(ids)},
        )
        self.ledger.record(turn.message(), ids, self.end_ids)
        return turn
