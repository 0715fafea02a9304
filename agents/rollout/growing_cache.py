"""A KV cache whose layers grow in place: a decode step writes its keys and values into spare room.

`transformers`' `DynamicLayer` appends each step with `torch.cat`, a copy of the whole cache: with a batch
of 8 rows of 2k tokens (SmolLM2-135M: 30 layers of 3 key-value heads of 64 floats) that is ~0.8 GB copied
per step, more memory traffic than reading the weights, so a batched decode step cost several single-row
ones. Here each layer's keys and values are views of a buffer with room for `GROWTH` more positions; a
step that fits is written in place. Anything that replaces a layer's tensors (rows joining or leaving the
batch, padding cut off) just makes the next step start a new buffer. Values are the same as `cat`'s.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

GROWTH = 256  # positions of spare room per buffer: a row of 64-token replies regrows every few turns


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose `keys`/`values` are the filled part of larger buffers."""

    _buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append along the sequence dimension, in place when the buffers have room."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self.keys.numel() == 0:
            self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
        filled, adding = self.keys.shape[-2], key_states.shape[-2]
        if not self._fits(adding):
            self._buffers = tuple(  # type: ignore[assignment]
                _with_room(tensor, filled + adding + GROWTH) for tensor in (self.keys, self.values)
            )
        keys, values = self._buffers  # type: ignore[misc]
        keys[..., filled : filled + adding, :] = key_states
        values[..., filled : filled + adding, :] = value_states
        self.keys, self.values = keys[..., : filled + adding, :], values[..., : filled + adding, :]
        return self.keys, self.values

    def _fits(self, adding: int) -> bool:
        """The current tensors are still the start of the buffers (nobody replaced them) with room left."""
        if self._buffers is None:
            return False
        keys, values = self._buffers
        return (
            _is_start_of(self.keys, keys)
            and _is_start_of(self.values, values)
            and self.keys.shape[-2] + adding <= keys.shape[-2]
        )


def growing_cache(config: Any) -> DynamicCache:
    """A `DynamicCache` for `config` whose layers are `GrowingLayer`s."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


def _with_room(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    """A new buffer of `capacity` positions starting with `tensor`'s."""
    shape = list(tensor.shape)
    shape[-2] = capacity
    buffer = tensor.new_empty(shape)
    buffer[..., : tensor.shape[-2], :] = tensor
    return buffer


def _is_start_of(view: torch.Tensor, buffer: torch.Tensor) -> bool:
    return (
        view.data_ptr() == buffer.data_ptr()
        and view.shape[:-2] == buffer.shape[:-2]
        and view.shape[-1] == buffer.shape[-1]
        and view.stride() == buffer.stride()
    )
