"""Next-token loss on the trained positions only, in chunks, so memory never holds a (tokens x vocab) tensor.

A full-vocabulary logits tensor for 4 x 4096 tokens and a 152 k vocabulary is 10 GB in fp32, more than the
whole 0.5 B model and its optimizer. Instead the output head is applied to the hidden states of trained
positions one chunk at a time, and each chunk's gradients (for the hidden states and the head) are computed
right there, while its logits exist: the backward pass only scales them. Peak memory is one chunk's
logits, and nothing is recomputed (activation checkpointing of the head would redo its matmul, which is a
quarter of a small model's FLOPs when the vocabulary is large). Positions without loss are never projected.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100
DEFAULT_CHUNK = 4096


class _LinearCrossEntropy(torch.autograd.Function):
    """sum(cross_entropy(hidden @ weight.T + bias, targets)), with the gradients made in the forward pass."""

    @staticmethod
    def forward(ctx: Any, hidden, weight, bias, targets, chunk: int):  # type: ignore[override]
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, targets.numel(), chunk):
            part = slice(start, start + chunk)
            h, t = hidden[part], targets[part]
            logits = F.linear(h, weight, bias).float()
            normaliser = torch.logsumexp(logits, dim=-1)
            total += (normaliser - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if not (need_hidden or need_weight or need_bias):
                continue
            probs = logits.sub_(normaliser[:, None]).exp_()  # d loss / d logits = softmax - one_hot
            probs[torch.arange(t.numel(), device=t.device), t] -= 1
            grad_logits = probs.to(h.dtype)
            if grad_hidden is not None:
                grad_hidden[part] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight += grad_logits.T @ h
            if grad_bias is not None:
                grad_bias += probs.sum(0)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        return total

    @staticmethod
    def backward(ctx: Any, grad_total):  # type: ignore[override]
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes

        def scaled(grad: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor | None:
            return None if grad is None else (grad * grad_total).to(dtype)

        hidden_dtype = None if grad_hidden is None else grad_hidden.dtype
        return (
            scaled(grad_hidden, hidden_dtype),
            scaled(grad_weight, weight_dtype),
            scaled(grad_bias, bias_dtype),
            None,
            None,
        )


def chunked_cross_entropy(
    hidden: torch.Tensor, head: nn.Linear, labels: torch.Tensor, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Sum of next-token losses: position t predicts labels[t + 1]; IGNORE labels contribute nothing."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    selected, wanted = hidden[:, :-1][keep], targets[keep]
    if not wanted.numel():  # zero, still connected to the graph, so every rank runs the same backward
        return 0.0 * hidden.sum(dtype=torch.float32)
    return _LinearCrossEntropy.apply(selected, head.weight, head.bias, wanted, chunk)


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
        """The next-token loss of packed rows; position ids restarting at 0 keep sequences apart."""
        outputs = self.model.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        return chunked_cross_entropy(
            outputs.last_hidden_state, self.model.get_output_embeddings(), labels, self.chunk
        )
