"""The in-place growing KV layer holds exactly what `DynamicLayer`'s `torch.cat` would, whatever the engine
does to it between steps (rows leaving, padding cut, tensors replaced), and copies nothing while it fits."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.cache_utils import DynamicLayer

from orchard_envs.agents.rollout.growing_cache import GROWTH, GrowingLayer

HEADS, DIM = 2, 4

# an operation: ("append", new positions) | ("select", rows kept) | ("cut", leading positions dropped)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 300)),
        st.tuples(st.just("select"), st.integers(1, 3)),
        st.tuples(st.just("cut"), st.integers(0, 5)),
    ),
    min_size=1,
    max_size=25,
)


def _states(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.randn(batch, HEADS, length, DIM, generator=generator),
        torch.randn(batch, HEADS, length, DIM, generator=generator),
    )


@settings(max_examples=60, deadline=None)
@given(operations, st.integers(1, 4))
def test_it_holds_what_cat_would(ops, batch):
    generator = torch.Generator().manual_seed(0)
    growing, plain = GrowingLayer(), DynamicLayer()
    for op, amount in [("append", 3), *ops]:
        if op == "append":
            keys, values = _states(batch, amount, generator)
            got = growing.update(keys, values)
            want = plain.update(keys, values)
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
        elif op == "select" and plain.keys.numel():
            keep = torch.arange(min(amount, batch))
            for layer in (growing, plain):
                layer.batch_select_indices(keep)
            batch = len(keep)
        elif op == "cut" and plain.keys.numel():
            for layer in (growing, plain):  # what the engine does to all-padding columns
                layer.keys, layer.values = layer.keys[:, :, amount:], layer.values[:, :, amount:]
        assert torch.equal(growing.keys, plain.keys) and torch.equal(growing.values, plain.values)


def test_a_step_that_fits_is_written_in_place():
    generator = torch.Generator().manual_seed(0)
    layer = GrowingLayer()
    layer.update(*_states(2, 10, generator))
    buffer = layer.keys.data_ptr()
    for _ in range(GROWTH):
        layer.update(*_states(2, 1, generator))
        assert layer.keys.data_ptr() == buffer
    layer.update(*_states(2, 1, generator))  # past the room: a new buffer
    assert layer.keys.data_ptr() != buffer and layer.keys.shape[-2] == 10 + GROWTH + 1
