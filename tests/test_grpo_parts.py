"""The GRPO trainer's pieces on known numbers: advantages, the overlong penalty, min-form credit, Balanced
Adaptive Rollout's choices, and the clipped, importance-weighted token loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from orchard_envs.episodes import Episode, EpisodeMetadata
from orchard_envs.trainers.advantages import (
    Group,
    Rollout,
    group_advantages,
    overlong_penalty,
    pure_min_form,
)
from orchard_envs.trainers.balanced_rollout import BalancedRollout, Estimate, RolloutSettings, is_positive
from orchard_envs.trainers.grpo_config import GRPOConfig
from orchard_envs.trainers.policy_loss import LossSettings, TrainSequence, sequence_loss

rewards = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=16)


def episode(reward: float = 0.0) -> Episode:
    metadata = EpisodeMetadata(
        env_id="x", suite="s", task_id="t", harness="h", agent="a", reward=reward, status="submitted"
    )
    return Episode(messages=[{"role": "user", "content": "hi"}], tools=[], metadata=metadata)


def group(task: str, values: list[float]) -> Group:
    return Group(task, [Rollout(episode(v), v) for v in values])


@given(rewards)
def test_advantages_are_centred(values: list[float]) -> None:
    # a sum of at most 16 terms in [-1, 1] rounds by ~16 * 2^-52; divided by std + 1e-4 >= 1e-4: < 1e-10
    assert abs(sum(group_advantages(values, scale=False))) < 1e-9
    assert abs(sum(group_advantages(values, scale=True))) < 1e-9


@given(rewards)
def test_scaled_advantages_have_unit_std_unless_the_group_is_flat(values: list[float]) -> None:
    scaled = group_advantages(values, scale=True)
    spread = math.sqrt(sum(a * a for a in scaled) / (len(scaled) - 1))
    raw_std = math.sqrt(sum((v - sum(values) / len(values)) ** 2 for v in values) / (len(values) - 1))
    # std / (std + 1e-4): 1 up to the epsilon's share
    assert spread == pytest.approx(raw_std / (raw_std + 1e-4), abs=1e-9)


def test_dr_grpo_keeps_the_raw_reward_differences() -> None:
    assert group_advantages([1.0, 0.0, 0.0, 0.0], scale=False) == [0.75, -0.25, -0.25, -0.25]
    assert group_advantages([1.0, 0.0], scale=True)[0] == pytest.approx(0.5 / (math.sqrt(0.5) + 1e-4))


def test_overlong_penalty_is_dapos_soft_ramp() -> None:
    assert overlong_penalty(100, None, 64) == 0.0
    assert overlong_penalty(192, 256, 64) == 0.0
    assert overlong_penalty(224, 256, 64) == -0.5
    assert overlong_penalty(256, 256, 64) == -1.0
    assert overlong_penalty(999, 256, 64) == -1.0


def test_min_form_credit_caps_every_turn_before_a_mistake() -> None:
    assert pure_min_form([1.0, 0.0, 1.0], 1.0) == [0.0, 0.0, 1.0]
    assert pure_min_form([1.0, 1.0], 0.0) == [0.0, 0.0]
    assert pure_min_form([1.0, 0.5], 1.0) == [0.5, 0.5]
    assert pure_min_form([], 1.0) == []


def test_zero_variance_groups_are_recognised() -> None:
    assert not group("a", [1.0, 1.0, 1.0]).has_variance()
    assert not group("a", [0.3, 0.1 + 0.2]).has_variance()  # rounding is not an outcome
    assert group("a", [1.0, 0.0]).has_variance()


def planner(balanced: bool = True) -> BalancedRollout:
    settings = RolloutSettings(
        group_size=4, min_group_size=2, max_group_size=8, success_threshold=1.0, balanced=balanced
    )
    return BalancedRollout(["near-half", "solved", "hopeless"], settings, seed=7)


def test_group_size_follows_uncertainty() -> None:
    bar = planner()
    bar.estimates["near-half"] = Estimate(5, 5)
    bar.estimates["solved"] = Estimate(50, 0)
    bar.estimates["hopeless"] = Estimate(0, 50)
    assert bar.group_size("near-half") == 8
    assert bar.group_size("solved") == 2
    assert bar.group_size("hopeless") == 2
    assert planner(balanced=False).group_size("solved") == 4


def test_tasks_near_half_are_drawn_most_and_plans_are_reproducible() -> None:
    bar = planner()
    bar.estimates.update(near=Estimate(5, 5), solved=Estimate(50, 0), hopeless=Estimate(0, 50))
    bar.task_ids = ["near", "solved", "hopeless"]
    draws = [bar.plan(1, step, 0, 0, 0)[0][0] for step in range(300)]
    assert draws.count("near") > 5 * max(draws.count("solved"), draws.count("hopeless"))
    assert draws.count("solved") > 0  # still probed now and then: the policy moves
    assert [bar.plan(2, 3, 1, 0, 0) for _ in range(3)] == [bar.plan(2, 3, 1, 0, 0)] * 3


def test_observing_moves_the_estimate_and_the_histogram() -> None:
    bar = planner()
    bar.observe(group("solved", [1.0, 1.0, 1.0, 1.0]))
    bar.observe(group("hopeless", [0.0, 0.0, 0.0, 0.0]))
    assert bar.estimates["solved"].pass_rate > 0.75 > 0.25 > bar.estimates["hopeless"].pass_rate
    assert sum(bar.histogram()) == 3
    restored = planner()
    restored.load_state_dict(bar.state_dict())
    assert restored.state_dict() == bar.state_dict()


def test_selection_alternates_positive_and_negative_groups() -> None:
    bar = planner()
    kept = [group(f"p{i}", [1.0, 1.0, 0.0]) for i in range(4)] + [group("n", [0.0, 0.0, 1.0])]
    chosen = bar.select(kept, 3)
    assert [is_positive(g) for g in chosen] == [True, False, True]


def settings(**overrides: object) -> LossSettings:
    base: dict[str, object] = dict(
        clip_low=0.2,
        clip_high=0.28,
        kl_coef=0.0,
        is_cap=2.0,
        aggregation="token",
        scale_rewards=True,
        constant=8,
    )
    return LossSettings(**{**base, **overrides})  # type: ignore[arg-type]


def sequence(advantages: list[float], **fields: object) -> TrainSequence:
    n = len(advantages)
    return TrainSequence(list(range(n + 1)), list(range(1, n + 1)), advantages, None, [1.0 / n] * n, **fields)  # type: ignore[arg-type]


def test_on_policy_loss_is_minus_the_mean_advantage_and_pushes_up_good_tokens() -> None:
    logprobs = torch.tensor([-1.0, -2.0], requires_grad=True)
    loss, stats = sequence_loss(logprobs, sequence([1.0, -1.0]), settings())
    assert loss.item() == pytest.approx(0.0)
    loss.backward()
    assert logprobs.grad is not None
    assert logprobs.grad.tolist() == pytest.approx([-0.5, 0.5])  # descent raises token 0, lowers token 1
    assert stats["clipped"] == 0


def test_ratios_outside_the_clip_range_stop_the_gradient() -> None:
    logprobs = torch.tensor([0.0, 0.0], requires_grad=True)
    old = torch.tensor([-1.0, 1.0])  # ratios e and 1/e: beyond 1.28 and below 0.8
    loss, stats = sequence_loss(logprobs, sequence([1.0, -1.0], old_logprobs=old), settings())
    loss.backward()
    assert logprobs.grad is not None and logprobs.grad.tolist() == [0.0, 0.0]
    assert stats["clipped"] == 2


def test_importance_weight_is_truncated_at_the_cap() -> None:
    logprobs = torch.tensor([-1.0], requires_grad=True)
    seq = sequence([1.0])
    seq.rollout_logprobs = [-5.0]  # the engine thought the token far less likely: weight e^4, capped at 2
    loss, stats = sequence_loss(logprobs, seq, settings(is_cap=2.0))
    assert loss.item() == pytest.approx(-2.0)
    assert stats["is_weight"] == pytest.approx(2.0)


def test_kl_term_is_k3_and_nonnegative() -> None:
    logprobs = torch.tensor([-1.0, -1.0])
    ref = torch.tensor([-1.0, -2.0])
    loss, stats = sequence_loss(logprobs, sequence([0.0, 0.0], ref_logprobs=ref), settings(kl_coef=1.0))
    expected = (math.exp(-1) + 1 - 1) / 2  # second token: e^d - d - 1 with d = -1; first is 0
    assert loss.item() == pytest.approx(expected)
    assert stats["kl"] >= 0


def test_loss_options_set_their_defaults() -> None:
    assert GRPOConfig(out="o").clip_high == 0.2
    dapo = GRPOConfig(out="o", loss="dapo")
    assert dapo.clip_high == 0.28 and dapo.aggregation == "token" and dapo.scale_rewards
    dr = GRPOConfig(out="o", loss="dr_grpo")
    assert dr.aggregation == "constant" and not dr.scale_rewards
    assert GRPOConfig(out="o", loss="dapo", clip_high=0.3).clip_high == 0.3
    with pytest.raises(ValueError, match="exceeds"):
        GRPOConfig(out="o", min_group_size=5, max_group_size=3)


def two_reply_episode(reward: float) -> Episode:
    messages = [
        {"role": "user", "content": "task"},
        {"role": "assistant", "content": "first"},
        {"role": "user", "content": "ok"},
        {"role": "assistant", "content": "second"},
    ]
    metadata = EpisodeMetadata(
        env_id="x", suite="s", task_id="t", harness="h", agent="a", reward=reward, status="submitted"
    )
    return Episode(messages=messages, tools=[], metadata=metadata)


def test_fork_credit_judges_each_turn_by_what_it_changed() -> None:
    from orchard_envs.trainers.turn_credit import continuation_trial, fork_credit

    good_then_bad = Rollout(two_reply_episode(0.0), 0.0, fork_values={1: 0.9})
    bad_then_good = Rollout(two_reply_episode(1.0), 1.0, fork_values={1: 0.1})
    fork_credit([Group("t", [good_then_bad, bad_then_good])], scale=False)
    # group mean 0.5: the first reply of the first rollout raised the value to 0.9, its second threw it away
    assert good_then_bad.turn_advantages == pytest.approx({1: 0.4, 3: -0.9})
    assert bad_then_good.turn_advantages == pytest.approx({1: -0.4, 3: 0.9})
    unforked = Rollout(two_reply_episode(1.0), 1.0)
    fork_credit([Group("t", [unforked, Rollout(two_reply_episode(0.0), 0.0)])], scale=False)
    assert unforked.turn_advantages == pytest.approx({1: 0.5, 3: 0.5})  # no fork: the episode's advantage
    assert continuation_trial(3, 1, 0) < 0 and continuation_trial(3, 1, 0) != continuation_trial(3, 1, 1)
