"""From episode files to packed rows: select, tokenize, decide which replies get loss, pack.

Which replies of an episode are trained depends on the mode for unresolved episodes: `skip` (the usual
rejection-sampling SFT), `all`, or `credit` (the productive prefix that a step scorer finds). The token
count of every mode is reported whichever one runs, so their cost can be compared on the same data.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from orchard_envs.trainers.config import SFTConfig
from orchard_envs.trainers.data import EpisodeFilter, Selection, select_episodes
from orchard_envs.trainers.examples import Example, Tokenizer, episode_examples
from orchard_envs.trainers.packing import Packed, pack


@dataclass
class Prepared:
    """The training data ready to train on, with the counts the run reports."""

    selection: Selection
    packed: Packed
    # trained tokens before packing, per mode for unresolved episodes: resolved_only (skip), all, credit
    tokens_by_mode: dict[str, int] = field(default_factory=dict)
    unresolved_episodes: int = 0

    def summary(self) -> dict[str, Any]:
        """The data counts as a dict, for the log and the run's summary file."""
        packed = self.packed
        return {
            "selection": self.selection.summary(),
            "unresolved_episodes": self.unresolved_episodes,
            "trained_tokens_by_mode": self.tokens_by_mode,
            "examples": packed.examples,
            "rows": len(packed.rows),
            "trained_tokens": packed.trained_tokens,
            "truncated_examples": packed.truncated_examples,
            "truncated_trained_tokens": packed.truncated_tokens,
            "dropped_examples": packed.dropped_examples,
            "longest_example": packed.longest,
        }


def prepare(config: SFTConfig, tokenizer: Tokenizer, pad_id: int, scorer: Any) -> Prepared:
    """`scorer` (a credit StepScorer) picks the trained steps of unresolved episodes in mode `credit`, and
    counts them for the report in the other modes."""
    from orchard_envs.trainers.credit import trained_steps

    keep = EpisodeFilter(
        suite=config.suite,
        split=config.split,
        harness=config.harness,
        model=config.from_model,
        min_reward=config.min_reward,
        max_turns=config.max_turns,
    )
    selection = select_episodes(config.episodes, keep)
    counts = {"resolved_only": 0, "all": 0, "credit": 0}
    chosen: list[tuple[Example, Collection[int] | None]] = []
    unresolved = 0
    for episode in selection.episodes:
        examples = episode_examples(episode, tokenizer, use_token_ids=config.token_ids == "auto")
        tokens = sum(example.trained_tokens() for example in examples)
        counts["all"] += tokens
        if episode.metadata.resolved:
            counts["resolved_only"] += tokens
            counts["credit"] += tokens
            chosen += [(example, None) for example in examples]
            continue
        unresolved += 1
        trained = set(trained_steps(episode, scorer.score(episode), config.credit_policy))
        counts["credit"] += sum(example.trained_tokens(trained) for example in examples)
        if config.unresolved == "all":
            chosen += [(example, None) for example in examples]
        elif config.unresolved == "credit":
            chosen += [(example, trained) for example in examples]
    packed = pack(chosen, config.seq_len, pad_id)
    return Prepared(selection, packed, counts, unresolved)
