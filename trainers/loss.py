"""Next-token loss on the trained positions only, in chunks, so memory never holds a (tokens x vocab) tensor.

A full-vocabulary logits tensor for 4 x 4096 tokens and a 152 k vocabulary is 10 GB in fp32, more than the
whole 0.5 B model and its optimizer. Instead the decoder's hidden states at trained positions are projected
one chunk at a time, each chunk recomputed in the backward pass (activation checkpointing), so peak memory
is one chunk's logits. Positions without loss are never projected at all.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE = -100
DEFAULT_CHUNK = 4096


def _chunk_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_cross_entropy(
    hidden: torch.Tensor, head: nn.Linear, labels: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Sum of next-token losses: position t predicts labels[t + 1]; IGNORE labels contribute nothing."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    selected, wanted = hidden[:, :-1][keep], targets[keep]
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, wanted.numel(), chunk):
        part = slice(start, start + chunk)
        total = total + checkpoint(
            _chunk_loss, selected[part], head.weight, head.bias, wanted[part], use_reentrant=False
        )
    if not wanted.numel():  # keep the graph connected, so every rank runs the same backward
        total = total + 0.0 * hidden.sum()
    return total


class CausalLMLoss(nn.Module):
    """A causal LM whose forward returns the summed loss of packed rows; one module, so FSDP's root hooks
    gather the embedding and output head around the whole computation."""

    def __init__(self, model: Any, chunk: int = DEFAULT_CHUNK) -> None:
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        # position ids that restart at 0 mark packed sequences: transformers builds a block-diagonal causal
        # mask for SDPA/eager, and varlen boundaries for flash attention, so sequences never see each other
        outputs = self.model.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        return chunked_cross_entropy(
            outputs.last_hidden_state, self.model.get_output_embeddings(), labels, self.chunk
        )
