"""A toy RL world small enough to learn in seconds on a CPU: a 20-word tokenizer, a tiny random Llama, an
env that rewards saying the colour it names, and a harness that takes the reply's first word as the action.

Everything is real (transformers model and tokenizer saved as a checkpoint, a ToolEnv, run_episode through
the `hf` agent); only the sizes are toys, so the GRPO trainer's loop runs end to end in a test.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from orchard_envs.agents.base import AssistantTurn
from orchard_envs.envs.tool_env import ToolEnv, find_task
from orchard_envs.envs.tools import ToolCall, function_tool
from orchard_envs.envs.verdict import Verdict
from orchard_envs.harnesses.base import Action, Call, FormatError, Harness

COLOURS = ["red", "green", "blue", "pink"]
WORDS = ["say", "the", "word", "ok", *COLOURS, "maybe", "no"]
SPECIALS = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "user", "assistant", "system"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant{% endif %}"
)
ENV_ID = "orchard-test/Colour-v0"
ANSWER = function_tool("answer", "Say one word.", {"word": {"type": "string"}}, ["word"])


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Llama over a word-level vocabulary, saved as a Hugging Face checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = vocab["<|im_end|>"]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class ColourEnv(ToolEnv):
    """Task `c`: "say the word c" (`rounds` times); each answer scores 1 when it is c, 0.5 for another
    colour, else 0; the reward is the mean score. Forks are plain copies (there is nothing outside)."""

    def __init__(
        self,
        suite: str = "colours",
        split: str | None = None,
        task_ids: list[str] | None = None,
        rounds: int = 1,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(max_steps=rounds, render_mode=render_mode)
        self.rounds = rounds
        self.tasks = list(task_ids or COLOURS)
        self._scores: list[float] = []
        self._target = ""

    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        target = find_task(self.tasks, task_id, str, "colours") if task_id else self.tasks[0]
        self._target, self._scores = target, []
        self._tools = [ANSWER]
        return f"say the word {target}", {"task": {"task_id": target, "suite": "colours", "split": "train"}}

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        answer = str(call.arguments.get("word", ""))
        self._scores.append(1.0 if answer == self._target else 0.5 if answer in COLOURS else 0.0)
        return "ok"

    def _grade(self, ending_call: ToolCall | None) -> Verdict:
        reward = sum(self._scores) / self.rounds
        right = reward == 1.0
        return Verdict(status="passed" if right else "failed", reward=reward, resolved=right)

    def _fork(self) -> ColourEnv:
        twin = copy.copy(self)
        twin._scores = list(self._scores)
        return twin


class FirstWordHarness(Harness):
    """The reply's first word is the answer: no format a random model would have to learn first."""

    name = "first-word"

    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """Only the instruction, as a user message."""
        return [{"role": "user", "content": instruction}], tools

    def api_tools(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """No tools in the prompt: the template does not know them."""
        return []

    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError:
        """The first word, whatever it is (an empty reply answers "")."""
        words = (turn.content or "").split()
        return [Call({"name": "answer", "arguments": {"word": words[0] if words else ""}})]

    def observation(self, call: Call, observation: str) -> dict[str, Any]:
        """The env's reply as a user message."""
        return {"role": "user", "content": "ok"}

    def encode(self, action: Action) -> AssistantTurn:
        """A reply that says the action's word."""
        return AssistantTurn(content=str(action["arguments"].get("word", "")))


def register() -> None:
    """Make the toy env and harness known to gym.make and get_harness (idempotent)."""
    from gymnasium.envs.registration import register as gym_register
    from gymnasium.envs.registration import registry

    from orchard_envs.harnesses import HARNESSES

    if ENV_ID not in registry:
        gym_register(ENV_ID, entry_point="rl_toy:ColourEnv")
    HARNESSES.setdefault("first-word", "rl_toy:FirstWordHarness")


if __name__ == "rl_toy":  # imported in another process by gym.make("rl_toy:<ENV_ID>") (a Ray actor)
    register()

if (
    __name__ == "__main__"
):  # `python tests/rl_toy.py grpo ...` (or under torchrun): the CLI with the toy known
    register()
    from orchard_envs.trainers.cli import main

    main()
