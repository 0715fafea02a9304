"""The policy-gradient loss of GRPO-family methods on the policy's own tokens, from recorded episodes.

Training sequences come from the SFT trainer's `episode_examples`: the sampled ids exactly as recorded, a
turn whose prompt does not extend the last one starting a sequence of its own, and only the assistant
tokens trained (prompts and tool results masked). Each trained token carries its turn's advantage, the
rollout engine's logprob of it (for the importance-sampling correction) and a weight that makes the sum
over tokens the chosen aggregation (per sequence, per token or over a constant).

Per token, with r = pi_theta / pi_old (pi_old: this policy before the update, as the trainer computes it):
  loss = -min(r A, clip(r, 1 - clip_low, 1 + clip_high) A) * w_IS + kl_coef * KL_k3(pi_theta || pi_ref)
where w_IS = min(pi_old / pi_rollout, is_cap) is the truncated importance weight that corrects for the
rollout engine sampling from a slightly different distribution (another kernel, dtype or batch shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from orchard_envs.trainers.advantages import Group, group_advantages
from orchard_envs.trainers.examples import Tokenizer, episode_examples


@dataclass
class TrainSequence:
    """One sequence to score: its ids, the positions of trained tokens and what each of them carries."""

    input_ids: list[int]
    positions: list[int]  # indices into input_ids of trained (policy-sampled) tokens
    advantages: list[float]
    rollout_logprobs: list[float] | None  # the rollout engine's logprob of each trained token
    weights: list[float]  # each token's share of the batch loss (the aggregation)
    old_logprobs: torch.Tensor | None = None  # this policy's, before the update (several passes only)
    ref_logprobs: torch.Tensor | None = None  # the frozen reference's (KL only)


@dataclass(frozen=True)
class LossSettings:
    """What the loss needs from the config."""

    clip_low: float
    clip_high: float
    kl_coef: float
    is_cap: float | None
    aggregation: str  # "sequence", "token" or "constant"
    scale_rewards: bool
    constant: int  # the constant normaliser of `constant` aggregation: token budget per rollout


def build_sequences(groups: list[Group], tokenizer: Tokenizer, settings: LossSettings) -> list[TrainSequence]:
    """Every trained token of the kept groups, with its advantage and weight."""
    tokens_of: list[int] = []
    pending: list[tuple[int, TrainSequence]] = []  # (rollout number, sequence)
    for group in groups:
        advantages = group_advantages(group.rewards, settings.scale_rewards)
        for rollout, advantage in zip(group.rollouts, advantages, strict=True):
            number, count = len(tokens_of), 0
            for sequence in _rollout_sequences(rollout, advantage, tokenizer):
                count += len(sequence.positions)
                pending.append((number, sequence))
            tokens_of.append(count)
    rollouts, total = len(tokens_of), sum(tokens_of)
    for number, sequence in pending:
        if settings.aggregation == "sequence":  # mean over the rollout's tokens, then over rollouts
            weight = 1.0 / (max(tokens_of[number], 1) * rollouts)
        elif settings.aggregation == "token":  # every token of the batch counts the same
            weight = 1.0 / max(total, 1)
        else:  # Dr. GRPO: a constant, so long and short replies are not reweighted
            weight = 1.0 / (settings.constant * rollouts)
        sequence.weights = [weight] * len(sequence.positions)
    return [sequence for _, sequence in pending if sequence.positions]


def _rollout_sequences(rollout: Any, advantage: float, tokenizer: Tokenizer) -> list[TrainSequence]:
    episode = rollout.episode
    logprobs_of = {turn.message_index: turn.logprobs for turn in episode.turns}
    sequences = []
    for example in episode_examples(episode, tokenizer):
        positions: list[int] = []
        advantages: list[float] = []
        engine: list[float] | None = []
        for reply in example.replies:
            positions += range(reply.start, reply.stop)
            advantages += [rollout.advantage_of(reply.message_index, advantage)] * (reply.stop - reply.start)
            recorded = logprobs_of.get(reply.message_index)
            if engine is not None and recorded is not None and len(recorded) == reply.stop - reply.start:
                engine += recorded
            else:
                engine = None  # a turn without engine logprobs: no IS correction for this sequence
        sequences.append(TrainSequence(example.input_ids, positions, advantages, engine, []))
    return sequences


def token_logprobs(model: Any, input_ids: list[int], positions: list[int]) -> torch.Tensor:
    """log pi(token at p | tokens before p) for each p in `positions` (float32), under `model`; only those
    positions are projected through the output head (`logits_to_keep`). Through the model's own forward,
    so an FSDP-sharded model gathers its weights."""
    device = next(model.parameters()).device
    ids = torch.tensor([input_ids], dtype=torch.long, device=device)
    where = torch.tensor(positions, dtype=torch.long, device=device)
    logits = model(input_ids=ids, logits_to_keep=where - 1, use_cache=False).logits[0].float()
    return logits.log_softmax(-1).gather(1, ids[0, where][:, None]).squeeze(1)


def sequence_loss(
    logprobs: torch.Tensor, sequence: TrainSequence, settings: LossSettings
) -> tuple[torch.Tensor, dict[str, float]]:
    """This sequence's share of the batch loss, and its sums for the step's metrics."""
    device = logprobs.device
    old = sequence.old_logprobs.to(device) if sequence.old_logprobs is not None else logprobs.detach()
    advantages = torch.tensor(sequence.advantages, dtype=torch.float32, device=device)
    weights = torch.tensor(sequence.weights, dtype=torch.float32, device=device)
    ratio = torch.exp(logprobs - old)
    clipped = ratio.clamp(1 - settings.clip_low, 1 + settings.clip_high)
    surrogate = torch.minimum(ratio * advantages, clipped * advantages)
    importance = torch.ones_like(ratio)
    mismatch = 0.0
    if settings.is_cap is not None and sequence.rollout_logprobs is not None:
        rollout = torch.tensor(sequence.rollout_logprobs, dtype=torch.float32, device=device)
        importance = torch.exp(old - rollout).clamp(max=settings.is_cap)
        mismatch = float((old - rollout).abs().sum())
    per_token = -surrogate * importance
    kl = torch.zeros_like(per_token)
    if settings.kl_coef and sequence.ref_logprobs is not None:
        delta = sequence.ref_logprobs.to(device) - logprobs
        kl = torch.exp(delta) - delta - 1  # k3: unbiased, always >= 0
        per_token = per_token + settings.kl_coef * kl
    loss = (per_token * weights).sum()
    was_clipped = ((ratio - clipped).abs() > 0) & (advantages != 0)
    stats = {
        "tokens": float(len(sequence.positions)),
        "clipped": float(was_clipped.sum()),
        "kl": float(kl.detach().sum()),
        "logprob_mismatch": mismatch,
        "is_weight": float(importance.sum()),
        "nll": float(-logprobs.detach().sum()),  # of the sampled tokens: an estimate of the entropy
    }
    return loss, stats
