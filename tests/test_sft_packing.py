"""Packing and the chunked loss: nothing leaks between packed sequences, nothing changes the loss."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from orchard_envs.trainers.examples import Example
from orchard_envs.trainers.loss import IGNORE, CausalLMLoss, chunked_cross_entropy
from orchard_envs.trainers.packing import pack

PAD = 0


@st.composite
def examples(draw):
    """Examples with random replies; token ids carry their example number so leaks would be visible."""
    found = []
    for number in range(draw(st.integers(1, 12))):
        example = Example(f"e{number}", "template")
        for message_index in range(draw(st.integers(1, 3))):
            example.append([100 + number] * draw(st.integers(1, 9)))
            example.append([200 + number] * draw(st.integers(1, 9)), reply_of=message_index * 2 + 1)
        found.append(example)
    return found


@settings(max_examples=200, deadline=None)
@given(found=examples(), seq_len=st.integers(8, 64), credit=st.booleans())
def test_rows_hold_whole_examples_with_their_own_positions_and_labels(found, seq_len, credit):
    trained = {1} if credit else None
    packed = pack([(example, trained) for example in found], seq_len, PAD)
    for row in packed.rows:
        assert len(row.input_ids) == len(row.labels) == len(row.position_ids) == seq_len
    kept = 0
    for row in packed.rows:
        starts = [i for i, position in enumerate(row.position_ids) if position == 0]
        for start, stop in zip(starts, [*starts[1:], seq_len], strict=True):
            ids, labels = row.input_ids[start:stop], row.labels[start:stop]
            assert labels[0] == IGNORE  # nothing is predicted across the boundary
            assert row.position_ids[start:stop] == list(range(stop - start))
            assert len({token % 100 for token in ids if token != PAD}) <= 1  # one example per segment
            assert all(label in (IGNORE, token) for label, token in zip(labels, ids, strict=True))
            assert all(label == IGNORE or label >= 200 for label in labels)  # replies only
            kept += sum(label != IGNORE for label in labels)
    expected = sum(sum(e.loss_mask(trained)[1:seq_len]) for e in found)
    assert kept == packed.trained_tokens == expected  # an example's first token is never a target
    assert packed.examples == len(found)


def test_an_example_longer_than_a_row_is_cut_and_counted():
    example = Example("long", "template")
    example.append([5] * 10)
    example.append([7] * 30, reply_of=1)
    packed = pack([(example, None)], 16, PAD)
    assert packed.truncated_examples == 1 and packed.truncated_tokens == 24
    assert packed.trained_tokens == 6
    prompt_only = Example("short", "template")
    prompt_only.append([5] * 20)
    prompt_only.append([7] * 3, reply_of=1)
    assert pack([(prompt_only, None)], 16, PAD).dropped_examples == 1


@pytest.fixture(scope="module")
def model(tiny_model):
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    return loaded.eval()


@pytest.fixture(scope="module")
def model64(model):
    """A float64 copy: comparisons of two computations that sum in different orders (chunks vs all at
    once, packed vs alone) must not depend on how this CPU's float32 kernels order their sums."""
    return copy.deepcopy(model).to(torch.float64)


def tolerance(loss: torch.Tensor, scale: float) -> float:
    """64 units of the loss's own precision times the size of what is compared.

    The model and the reference are float64 (eps 2.2e-16), so their summation-order error is ~1e-15 of
    `scale` on any CPU. The chunked loss computes its logits and sums in `loss.dtype`: float32 for a
    float64 model today (trainers/loss.py upcasts to float32, not beyond), where one rounding of the
    logits (u = 6e-8) moves the result by ~1 eps of `scale` (measured: 0.5 eps; 0.8 eps with float64
    sums in the loss). 64 eps leaves >=60x headroom at either precision (7e-6 of `scale` for float32,
    1.4e-14 for float64) and still catches any real mistake (a missed or doubled chunk moves the result
    by O(scale)).
    """
    return 64 * torch.finfo(loss.dtype).eps * scale


def test_packed_sequences_do_not_see_each_other(model64):
    """The loss of a packed row is the sum of its sequences' losses run alone (transformers only reads
    restarting position ids as boundaries when no KV cache is passed: the trainer's loss sets use_cache)."""
    torch.manual_seed(1)
    first, second = torch.randint(10, 1000, (1, 7)), torch.randint(10, 1000, (1, 5))
    loss = CausalLMLoss(model64)
    with torch.no_grad():
        together = loss(
            input_ids=torch.cat([first, second], dim=1),
            position_ids=torch.tensor([list(range(7)) + list(range(5))]),
            labels=torch.cat([first, torch.full((1, 1), IGNORE), second[:, 1:]], dim=1),
        )
        alone = [
            loss(input_ids=x, position_ids=torch.arange(x.shape[1])[None], labels=x) for x in (first, second)
        ]
    # both sides see the same float64 hidden states; only the loss's own sums differ (see tolerance)
    atol = tolerance(together, together.abs().item())
    torch.testing.assert_close(together, alone[0] + alone[1], rtol=0, atol=atol)


def test_chunked_loss_and_gradients_equal_the_full_cross_entropy(model64):
    """Against a float64 reference: in float32 the two orders of summation differed by 7.7e-6 on one CPU
    and not on another, so a float32 comparison tested the CPU, not the loss."""
    torch.manual_seed(2)
    ids = torch.randint(10, 1000, (2, 12))
    labels = ids.clone()
    labels[:, :4] = IGNORE
    labels[1, 8:] = IGNORE
    positions = torch.arange(12).repeat(2, 1)

    model64.zero_grad()
    full = model64(input_ids=ids, position_ids=positions).logits[:, :-1]
    assert full.dtype == torch.float64
    reference = torch.nn.functional.cross_entropy(
        full.reshape(-1, full.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    reference.backward()
    expected = [p.grad.clone() for p in model64.parameters()]

    model64.zero_grad()
    chunked = CausalLMLoss(model64, chunk=3)(input_ids=ids, position_ids=positions, labels=labels)
    chunked.backward()
    torch.testing.assert_close(
        chunked.double(), reference, rtol=0, atol=tolerance(chunked, reference.abs().item())
    )
    atol = tolerance(chunked, max(want.abs().max().item() for want in expected))
    for got, want in zip((p.grad for p in model64.parameters()), expected, strict=True):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want, rtol=0, atol=atol)
    model64.zero_grad()


def test_no_trained_position_gives_zero_loss_that_still_backpropagates(model):
    hidden = torch.randn(1, 4, model.config.hidden_size, requires_grad=True)
    labels = torch.full((1, 4), IGNORE)
    loss = chunked_cross_entropy(hidden, model.get_output_embeddings(), labels)
    loss.backward()
    assert loss.item() == 0 and hidden.grad is not None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_fused_loss_handles_a_biased_head_in_every_dtype(dtype):
    torch.manual_seed(3)
    head = torch.nn.Linear(16, 50, bias=True).to(dtype)
    hidden = torch.randn(2, 9, 16, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9))
    labels[0, :3] = IGNORE
    chunked_cross_entropy(hidden, head, labels, chunk=4).backward()
    ours = [hidden.grad, head.weight.grad, head.bias.grad]
    assert [grad.dtype for grad in ours] == [dtype] * 3
    # the reference runs in float64, so only our own rounding (float32 or bf16) is measured
    copies = [tensor.detach().double().requires_grad_() for tensor in (hidden, head.weight, head.bias)]
    logits = torch.nn.functional.linear(copies[0][:, :-1], copies[1], copies[2])
    torch.nn.functional.cross_entropy(
        logits.reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=IGNORE, reduction="sum"
    ).backward()
    limit = 1e-5 if dtype == torch.float32 else 3e-2  # ~80 and ~4 eps of the dtype
    for got, twin in zip(ours, copies, strict=True):
        torch.testing.assert_close(got.double(), twin.grad, rtol=limit, atol=limit)
