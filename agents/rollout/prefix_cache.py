"""Finished rows' keys and values, kept so that a prompt extending one prefills only what is new.

An agent's next turn is its last prompt, its reply and the observation; every episode of a suite starts
with the same system prompt and tool schemas. On a CPU the prefill of those thousands of tokens is most of
a turn. When a row leaves the batch its sequence (prompt and sampled ids, all but the last id, which was
never fed) is kept with its keys and values; a joining row whose prompt shares at least `min_reuse`
leading tokens with a kept sequence starts from those cached positions and prefills only the rest.

Exactness: reused keys and values are the ones computed in their first pass (another batch, another
length), so a turn's logits can differ from a fresh prefill's in the last bits, and a near tie can then
flip. The cache is emptied whenever `load_weights` changes the weights; a generator whose weights change
underneath it (the trainer's colocated one) does not use one.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

MIN_REUSE = 64  # shorter shared prefixes save little and are not worth a separate prefill


class PrefixCache:
    """Least-recently-used sequences with their per-layer (keys, values), within a byte budget."""

    def __init__(self, max_bytes: int, min_reuse: int = MIN_REUSE) -> None:
        self.max_bytes, self.min_reuse = max_bytes, min_reuse
        self._entries: OrderedDict[int, tuple[np.ndarray, list[tuple[Any, Any]], int]] = OrderedDict()
        self._next = 0
        self.bytes = 0
        self.stats = {"hits": 0, "misses": 0, "reused_tokens": 0}

    def lookup(self, prompt: list[int]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """(n, layers cut to the first n positions) for the kept sequence sharing the longest prefix with
        `prompt`, n < len(prompt) so one token is left to prefill; (0, None) below `min_reuse`."""
        best, best_key = self._best(prompt)
        if best_key is None or best < self.min_reuse:
            self.stats["misses"] += 1
            return 0, None
        self._entries.move_to_end(best_key)
        layers = self._entries[best_key][1]
        self.stats["hits"] += 1
        self.stats["reused_tokens"] += best
        return best, [(keys[:, :, :best], values[:, :, :best]) for keys, values in layers]

    def reusable(self, prompt: list[int]) -> int:
        """How many of the prompt's leading positions `lookup` would hand out (0 below `min_reuse`)."""
        best, key = self._best(prompt)
        return best if key is not None and best >= self.min_reuse else 0

    def _best(self, prompt: list[int]) -> tuple[int, int | None]:
        wanted = np.asarray(prompt)
        best, best_key = 0, None
        for key, (ids, _, _) in self._entries.items():
            shared = _common_prefix(wanted, ids)
            if shared > best:
                best, best_key = shared, key
        return min(best, len(prompt) - 1), best_key

    def store(self, sequence: list[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep `sequence` (its layers' tensors are `[1, heads, len(sequence), dim]`, owned by the cache);
        kept sequences it extends are dropped, and the oldest go until the budget holds."""
        if len(sequence) < self.min_reuse:
            return
        ids = np.asarray(sequence)
        for key, (kept, _, _) in list(self._entries.items()):
            if len(kept) <= len(ids) and _common_prefix(ids, kept) == len(kept):
                self._drop(key)
        size = sum(keys.nelement() * keys.element_size() * 2 for keys, _ in layers)
        if size > self.max_bytes:
            return
        self._entries[self._next] = (ids, layers, size)
        self._next += 1
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        """Forget everything (the weights changed: every kept value is stale)."""
        self._entries.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: int) -> None:
        self.bytes -= self._entries.pop(key)[2]


def shared_start(prompts: list[list[int]]) -> int:
    """How many leading tokens all the prompts share."""
    first = np.asarray(prompts[0])
    return min(_common_prefix(first, np.asarray(prompt)) for prompt in prompts)


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n
