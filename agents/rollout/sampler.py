"""Per-row sampling for a batch whose rows belong to different requests.

Each row owns a `torch.Generator` and draws exactly one uniform number per sampled token from it, then
picks the token by inverting the (temperature-scaled, top-p-truncated) CDF of its own logits. So a seeded
row's random stream never depends on how many rows share the batch or in which order they joined; only
the logits themselves can differ, in the last bits, between a batched and an unbatched forward pass.
Logprobs are always the model's own (temperature 1, no top-p), as vLLM reports them by default.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import torch


def row_seed(seed: int | None, index: int) -> int:
    """The generator seed of row `index` of a request: row 0 uses the request's seed itself (so a one-row
    request with seed s draws as s), later rows a stable hash, so n samples of one seeded request differ.
    Unseeded requests get fresh entropy."""
    if seed is None:
        return secrets.randbits(63)
    if index == 0:
        return seed % (1 << 64)
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8, person=b"orchard-row").digest()
    return int.from_bytes(digest, "big") >> 1


class RowSampler:
    """One row's sampling settings and random stream."""

    def __init__(self, temperature: float, top_p: float, seed: int) -> None:
        self.temperature, self.top_p = temperature, top_p
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def uniform(self) -> float:
        """The next draw of this row's stream (one per sampled token; greedy rows draw none)."""
        return float(torch.rand((), generator=self.generator, dtype=torch.float64))


def sample_rows(logits: torch.Tensor, samplers: list[RowSampler]) -> tuple[list[int], list[float]]:
    """The next token of every row of `logits` (rows, vocab) and its temperature-1 logprob."""
    logits = logits.float()
    logprobs = logits.log_softmax(-1)
    chosen = logits.argmax(-1)
    sampled = [i for i, sampler in enumerate(samplers) if sampler.temperature > 0]
    if sampled:
        picks = [_invert_cdf(logits[i], samplers[i], samplers[i].uniform()) for i in sampled]
        chosen[torch.tensor(sampled, device=logits.device)] = torch.stack(picks)
    ids = chosen.tolist()
    values = logprobs.gather(-1, chosen[:, None])[:, 0].tolist()
    return ids, values


def _invert_cdf(logits: torch.Tensor, sampler: RowSampler, u: float) -> Any:
    """The token at quantile `u` of softmax(logits / T), restricted to the top-p nucleus: the smallest set
    of most likely tokens whose mass reaches top_p (the most likely token always stays)."""
    probs = (logits / sampler.temperature).softmax(-1).double()
    if sampler.top_p >= 1.0:
        order, ranked = None, probs
    else:
        ranked, order = probs.sort(descending=True)
        ranked = ranked * ((ranked.cumsum(-1) - ranked) < sampler.top_p)
    cdf = ranked.cumsum(-1)
    index = torch.searchsorted(cdf, cdf[-1:] * u, right=True)  # the first token whose cdf passes u
    if index >= cdf.numel():  # u * total rounded up to the total: the last token with mass
        index = ranked.nonzero()[-1]
    return (order[index] if order is not None else index)[0]
