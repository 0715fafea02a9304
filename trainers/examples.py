"""Episodes into training examples: token ids plus a loss mask that covers exactly the assistant tokens.

Two sources, one rule: an example is what the model saw, with loss on what it wrote.

- Stored token ids (`Episode.turns`, written by the `hf` and `vllm` agents), when the first prompt decodes
  to what this model's template renders (else they belong to another model): each turn's prompt ids and
  sampled ids are used as they are, so the trainer sees the very tokens the policy produced (no BPE
  re-merging across turn boundaries, the end-of-turn token exactly where it was sampled).
- Rendering through the chat template (oracle, replay or API episodes): incremental rendering, the way
  TRL-style `{% generation %}` masks would mark it but for every template. For assistant message k the
  prompt is `render(messages[:k], add_generation_prompt=True)` and the reply is what
  `render(messages[:k+1])` adds after it; the reply is tokenized on its own, as a sampled reply would be,
  and its loss ends at its end-of-turn token (the newline some templates write after it is never sampled).

A turn whose prompt does not extend the previous example (a template that rewrites history, such as one that
drops earlier `<think>` blocks, or a harness that trimmed context) starts a new example, so no token is
ever trained under a context the model did not have. Each example records where every reply lies, so credit
assignment can later pick which replies get loss while the others stay in the context with no loss.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from orchard_envs.agents.chat_format import ChatFormat
from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError

Source = Literal["token_ids", "template"]


class EmptyMaskError(ConfigError):
    """An assistant message yielded no trained token: the template or the stored ids are not as expected."""


@dataclass(frozen=True)
class Reply:
    """Where assistant message `message_index` sits in an example: tokens [start, stop) get its loss."""

    message_index: int
    start: int
    stop: int


@dataclass
class Example:
    """One training sequence and its assistant replies; which replies get loss is decided later."""

    episode_id: str
    source: Source
    input_ids: list[int] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)

    def append(self, ids: Iterable[int], reply_of: int | None = None) -> None:
        """Add tokens; with `reply_of`, they are the reply of that message and may be trained on."""
        start = len(self.input_ids)
        self.input_ids += ids
        if reply_of is not None:
            self.replies.append(Reply(reply_of, start, len(self.input_ids)))

    def loss_mask(self, trained: Collection[int] | None = None) -> list[bool]:
        """True on the tokens of the replies in `trained` (message indices; None: every reply)."""
        mask = [False] * len(self.input_ids)
        for reply in self.replies:
            if trained is None or reply.message_index in trained:
                mask[reply.start : reply.stop] = [True] * (reply.stop - reply.start)
        return mask

    def trained_tokens(self, trained: Collection[int] | None = None) -> int:
        """Tokens of the replies trained on (all of them when `trained` is None)."""
        return sum(r.stop - r.start for r in self.replies if trained is None or r.message_index in trained)


@dataclass(frozen=True)
class Tokenizer:
    """The chat format and end-of-turn ids of the model being trained (what its `hf` agent would use)."""

    chat: ChatFormat
    end_ids: frozenset[int]

    @classmethod
    def of(cls, tokenizer: Any, end_ids: Iterable[int]) -> Tokenizer:
        """A Tokenizer from a Hugging Face tokenizer and the model's end-of-turn token ids."""
        return cls(ChatFormat(tokenizer), frozenset(end_ids))

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without special tokens added."""
        return list(self.chat.tokenizer.encode(text, add_special_tokens=False))


def episode_examples(episode: Episode, tokenizer: Tokenizer, *, use_token_ids: bool = True) -> list[Example]:
    """The examples of one episode, from its stored token ids where it has them for every reply and they
    come from this tokenizer and template."""
    assistant = [i for i, message in enumerate(episode.messages) if message["role"] == "assistant"]
    if use_token_ids and _has_all_token_ids(episode, assistant) and _same_tokenizer(episode, tokenizer):
        return list(_from_token_ids(episode, tokenizer))
    return list(_from_template(episode, assistant, tokenizer))


def _has_all_token_ids(episode: Episode, assistant: list[int]) -> bool:
    covered = [turn.message_index for turn in episode.turns if turn.prompt_token_ids is not None]
    return bool(assistant) and covered == assistant


def _same_tokenizer(episode: Episode, tokenizer: Tokenizer) -> bool:
    """Ids recorded by another model (another vocabulary or template) would train nonsense: the first
    prompt must decode to exactly what this template renders for it, with the episode's tools in the
    API or (a text harness describes them in its prompt) none."""
    first = episode.turns[0]
    ids = first.prompt_token_ids or []
    if max(ids, default=0) >= len(tokenizer.chat.tokenizer):
        return False
    text = tokenizer.chat.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    messages = episode.messages[: first.message_index]
    # the episode's tools went through the model API, or (text harnesses: react, bash) none did
    offered = [episode.tools, []] if episode.tools else [episode.tools]
    render = tokenizer.chat.render
    return any(text == render(messages, tools, add_generation_prompt=True) for tools in offered)


def _from_token_ids(episode: Episode, tokenizer: Tokenizer) -> Iterator[Example]:
    example: Example | None = None
    for turn in episode.turns:
        prompt, reply = list(turn.prompt_token_ids or []), list(turn.token_ids)
        if not reply:
            raise EmptyMaskError(
                f"episode {episode.metadata.episode_id}: message {turn.message_index} has no sampled tokens"
            )
        if example is not None and prompt[: len(example.input_ids)] == example.input_ids:
            example.append(prompt[len(example.input_ids) :])
        else:
            if example is not None:
                yield example
            example = Example(episode.metadata.episode_id, "token_ids")
            example.append(prompt)
        example.append(reply, turn.message_index)
    if example is not None:
        yield example


def _from_template(episode: Episode, assistant: list[int], tokenizer: Tokenizer) -> Iterator[Example]:
    chat, tools = tokenizer.chat, episode.tools
    example: Example | None = None
    text = ""  # the text `example` holds
    for index in assistant:
        prompt = chat.render(episode.messages[:index], tools, add_generation_prompt=True)
        full = chat.render(episode.messages[: index + 1], tools, add_generation_prompt=False)
        if not full.startswith(prompt):
            raise ConfigError(
                f"episode {episode.metadata.episode_id}: the chat template renders assistant message {index} "
                "differently from its generation prompt (e.g. a `<think>` opener only in the prompt), so a "
                "loss mask cannot be aligned; train from episodes with stored token ids, or fix the template"
            )
        if example is not None and prompt.startswith(text):
            example.append(tokenizer.encode(prompt[len(text) :]))
        else:
            if example is not None:
                yield example
            example = Example(episode.metadata.episode_id, "template")
            example.append(tokenizer.encode(prompt))
        _check_kept(episode, index, full[len(prompt) :])
        reply = tokenizer.encode(full[len(prompt) :])
        cut = _through_end_token(reply, tokenizer.end_ids)
        if cut is None:
            raise EmptyMaskError(
                f"episode {episode.metadata.episode_id}: the chat template writes no end-of-turn token "
                f"(ids {sorted(tokenizer.end_ids)}) after assistant message {index}, so the model would not "
                "learn to stop; set the tokenizer's chat template or the generation config's eos_token_id"
            )
        example.append(reply[:cut], index)
        example.append(reply[cut:])
        text = full
    if example is not None:
        yield example


def _check_kept(episode: Episode, index: int, rendered: str) -> None:
    """A template that rewrites a text reply (drops its `<think>` reasoning, say) would train the model on
    text it never wrote; only stored token ids can say what it wrote then. (A reply with tool calls is what
    the template makes of it: Llama-3.1-style templates drop the prose beside a call, by design.)"""
    message = episode.messages[index]
    content = message.get("content")
    if isinstance(content, str) and not message.get("tool_calls") and content.strip() not in rendered:
        raise ConfigError(
            f"episode {episode.metadata.episode_id}: the chat template rewrites assistant message {index} "
            "(e.g. drops its reasoning), so its loss would be on text the model never wrote; train from "
            "episodes with stored token ids (the hf and vllm agents record them), or use a template that "
            "keeps the last reply as written"
        )


def _through_end_token(ids: list[int], end_ids: frozenset[int]) -> int | None:
    """Length of the reply up to and including its first end-of-turn token; None when there is none."""
    return next((position + 1 for position, token in enumerate(ids) if token in end_ids), None)
