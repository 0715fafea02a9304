"""The seed of every sampled turn, from (run seed, task, trial, turn): k trials are k independent draws.

A run seed alone (or the run seed plus the turn) would give every trial of a task the same episode, so
pass@k and pass^k would measure one sample k times. The seed is a stable hash (never Python's `hash()`,
which is salted per process), so a rerun with the same run seed reproduces every episode exactly.
Shared by every sampling agent (`hf`, `vllm`, `openai`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

SEED_BITS = 63  # fits a signed 64-bit integer: torch, vLLM and OpenAI-compatible servers all take it
_PERSON = b"orchard-draw"  # domain separation: these digests are seeds of this one kind


def draw_seed(run_seed: int, task_id: str, trial: int, turn: int) -> int:
    """The seed of one draw, in [0, 2**63); distinct inputs give distinct seeds (barring a 63-bit
    collision). JSON of a list of ints and a string is an unambiguous encoding of the four fields."""
    key = json.dumps([int(run_seed), str(task_id), int(trial), int(turn)]).encode()
    digest = hashlib.blake2b(key, digest_size=8, person=_PERSON).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)


@dataclass(frozen=True)
class EpisodeDraws:
    """The draw seeds of one episode: None throughout when the run has no seed (unseeded sampling)."""

    run_seed: int | None
    task_id: str = ""
    trial: int = 0

    def seed(self, turn: int) -> int | None:
        """The sampling seed of `turn`, or None when the run has no seed."""
        if self.run_seed is None:
            return None
        return draw_seed(self.run_seed, self.task_id, self.trial, turn)
