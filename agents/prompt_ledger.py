"""Token-in-token-out prompts for a local policy: turn t+1's prompt ids extend turn t's prompt + sampled ids.

Re-tokenizing the rendered conversation each turn would hand the model (and the trainer) ids that differ
from what it sampled (BPE merges across the turn boundary, normalised whitespace). Instead the ledger keeps
the previous prompt's text and ids; if the newly rendered conversation starts with that text followed by
exactly the generated text, only the new suffix is tokenized and appended. When the template rewrites
history (strips reasoning, trims whitespace) or the caller changed earlier messages (context trimming),
the prompt is tokenized afresh and `extends_previous` is False, so the episode says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchard_envs.agents.chat_format import ChatFormat


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt; `extends_previous` says whether the last prompt's tokens were kept as-is."""

    token_ids: list[int]
    text: str
    extends_previous: bool | None  # None on the first turn


@dataclass
class _Generated:
    message: dict[str, Any]  # what the harness appended for this reply
    raw_text: str  # the sampled text without its end-of-turn token
    full_text: str  # decode of every sampled id, end-of-turn included
    token_ids: list[int]


@dataclass
class PromptLedger:
    """One episode's prompts. Call `prompt` before sampling and `record` after; `reset` between episodes."""

    chat: ChatFormat
    _last_prompt: Prompt | None = None
    _last_generated: _Generated | None = None
    _own: list[_Generated] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the episode's prompts, for a new episode."""
        self._last_prompt, self._last_generated, self._own = None, None, []

    def prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> Prompt:
        """Render the prompt; when it extends the last one, reuse its tokens and the sampled ones as-is."""
        text = self.chat.render(self._with_raw_text(messages), tools, add_generation_prompt=True)
        previous, generated = self._last_prompt, self._last_generated
        if previous is not None and generated is not None:
            head = previous.text + generated.full_text
            if text.startswith(head):
                ids = previous.token_ids + generated.token_ids + self._encode(text[len(head) :])
                return self._keep(Prompt(ids, text, True))
        return self._keep(Prompt(self._encode(text), text, None if previous is None else False))

    def record(self, message: dict[str, Any], token_ids: list[int], end_token_ids: set[int]) -> None:
        """Remember a reply: `message` is the assistant message built from it (matched later by equality)."""
        body = without_end_token(token_ids, end_token_ids)
        decode = self.chat.tokenizer.decode
        generated = _Generated(
            dict(message),
            decode(body, skip_special_tokens=False),
            decode(token_ids, skip_special_tokens=False),
            list(token_ids),
        )
        self._own.append(generated)
        self._last_generated = generated

    def _with_raw_text(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Own replies rendered from what was sampled; anything else (an edited reply) as it stands."""
        own = list(self._own)
        out = []
        for message in messages:
            match = next((g for g in own if g.message == message), None)
            if match is not None:
                own.remove(match)
                message = {**message, "raw_text": match.raw_text}
            out.append(message)
        return out

    def _encode(self, text: str) -> list[int]:
        return list(self.chat.tokenizer.encode(text, add_special_tokens=False))

    def _keep(self, prompt: Prompt) -> Prompt:
        self._last_prompt, self._last_generated = prompt, None
        return prompt


def without_end_token(token_ids: list[int], end_token_ids: set[int]) -> list[int]:
    """The reply's text tokens: the template writes the end-of-turn token itself when it renders history."""
    return token_ids[:-1] if token_ids and token_ids[-1] in end_token_ids else token_ids
