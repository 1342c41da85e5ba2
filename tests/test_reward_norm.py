"""Per-task reward normalisation against values computed by hand on recorded reward sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl.agents.reward_norm import RewardNormaliser, discounted_returns
from mtrl.envs import make_env

GAMMA, V_MAX, TARGET_ENTROPY = 0.5, 10.0, -1.0

# Three tasks stepped together for three steps:
#   task 0: rewards 1, 2, 3, terminated at the third step;
#   task 1: rewards -4, 2, truncated at the second step (then 7 starts a new episode);
#   task 2: never finishes an episode.
REWARDS = np.array([[1.0, -4.0, 5.0], [2.0, 2.0, 5.0], [3.0, 7.0, 5.0]])  # [steps, T]
TERMINATED = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0]], dtype=bool)
TRUNCATED = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=bool)


def _fed(mode: str, steps: int = 3) -> RewardNormaliser:
    norm = RewardNormaliser(mode, 3, GAMMA, V_MAX, TARGET_ENTROPY)
    for t in range(steps):
        norm.observe(REWARDS[t], TERMINATED[t], TRUNCATED[t])
    return norm


def test_discounted_returns_by_hand():
    # Terminated: G_2 = 3, G_1 = 2 + 0.5 * 3 = 3.5, G_0 = 1 + 0.5 * 3.5 = 2.75.
    assert discounted_returns(np.array([1.0, 2.0, 3.0]), GAMMA, False) == pytest.approx(
        [2.75, 3.5, 3.0]
    )
    # Truncated: the tail bootstraps with mean reward (-1) / (1 - 0.5) = -2, so
    # G_1 = 2 + 0.5 * -2 = 1 and G_0 = -4 + 0.5 * 1 = -3.5.
    assert discounted_returns(np.array([-4.0, 2.0]), GAMMA, True) == pytest.approx([-3.5, 1.0])


def test_returns_factor_matches_the_hand_computed_denominators():
    norm = _fed("returns")
    alpha = torch.tensor([0.2, 0.4, 1.0])
    factor = norm.factor(alpha)
    horizon = 1 / (1 - GAMMA)  # 2
    # task 0: extent max(3.5, |2.75|) = 3.5; task 1: max(1, |-3.5|) = 3.5. The entropy term
    # -alpha * horizon * target_entropy / 2 adds alpha here (target entropy -1, horizon 2).
    expected_0 = V_MAX / (3.5 - 0.2 * horizon * TARGET_ENTROPY / 2)  # 10 / 3.7
    expected_1 = V_MAX / (3.5 - 0.4 * horizon * TARGET_ENTROPY / 2)  # 10 / 3.9
    assert factor[0].item() == pytest.approx(expected_0, rel=1e-6)
    assert factor[1].item() == pytest.approx(expected_1, rel=1e-6)
    assert factor[2].item() == 1.0  # no finished episode yet: rewards pass unchanged


def test_extent_is_the_running_min_and_max_over_episodes():
    norm = _fed("returns")
    # Task 1's next episode: 7 then terminated -> G = 7: the max grows to 7, |min| stays 3.5.
    norm.observe(np.array([0.0, 0.0, 0.0]), np.array([0, 1, 0], bool), np.zeros(3, bool))
    # The episode is [7, 0]: G_1 = 0, G_0 = 7.
    factor = norm.factor(torch.zeros(3))
    assert factor[1].item() == pytest.approx(V_MAX / 7.0)


def test_state_round_trip_mid_episode_resumes_exactly():
    first = _fed("returns", steps=2)
    second = RewardNormaliser("returns", 3, GAMMA, V_MAX, TARGET_ENTROPY)
    second.load_state_dict(first.state_dict())
    for norm in (first, second):
        norm.observe(REWARDS[2], TERMINATED[2], TRUNCATED[2])
    alpha = torch.tensor([0.3, 0.3, 0.3])
    assert torch.equal(first.factor(alpha), second.factor(alpha))
    with pytest.raises(ValueError, match="reward_norm"):
        RewardNormaliser("scale", 3, GAMMA, V_MAX, TARGET_ENTROPY).load_state_dict(
            first.state_dict()
        )


def test_scale_is_one_over_mean_abs_reward_frozen_between_refreshes():
    norm = _fed("scale")
    assert torch.equal(norm.factor(torch.ones(3)), torch.ones(3))  # not refreshed yet
    norm.refresh()
    mean_abs = np.abs(REWARDS).mean(0)  # [2, 13/3, 5]
    assert norm.factor(torch.ones(3)).numpy() == pytest.approx(1 / mean_abs, rel=1e-6)
    norm.observe(np.array([100.0, 100.0, 100.0]), np.zeros(3, bool), np.zeros(3, bool))
    assert norm.factor(torch.ones(3)).numpy() == pytest.approx(1 / mean_abs, rel=1e-6)
    norm.refresh()
    assert norm.factor(torch.ones(3))[0].item() == pytest.approx(4 / 106)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_rewards_are_left_out_of_the_statistics(bad):
    """scale leaves the reward out of its mean; returns leaves out the episode it falls in (its
    return is unknown), so both keep the factors of the finite rewards."""
    for mode in ("scale", "returns"):
        clean, poisoned = _fed(mode), _fed(mode, steps=0)
        for t in range(3):
            rewards = REWARDS[t].copy()
            if t == 1:
                rewards[0] = bad  # task 0's only episode, which terminates at the third step
            poisoned.observe(rewards, TERMINATED[t], TRUNCATED[t])
        for norm in (clean, poisoned):
            norm.refresh()
        alpha = torch.full((3,), 0.2)
        factor = poisoned.factor(alpha)
        assert torch.isfinite(factor).all(), mode
        assert torch.equal(factor[1:], clean.factor(alpha)[1:]), mode
        if mode == "scale":  # task 0's mean |r| over its two finite rewards, 1 and 3
            assert factor[0].item() == pytest.approx(1 / 2)
        else:  # task 0 has no episode with a known return yet: its rewards pass unchanged
            assert factor[0].item() == 1.0


def test_none_passes_rewards_through_and_unknown_modes_fail():
    assert torch.equal(_fed("none").factor(torch.rand(3)), torch.ones(3))
    with pytest.raises(ValueError, match="reward_norm must be one of"):
        RewardNormaliser("minmax", 3, GAMMA, V_MAX, TARGET_ENTROPY)


def test_synthetic_scaled_multiplies_task_i_by_ten_to_the_i():
    plain, scaled = make_env("synthetic:3", seed=4), make_env("synthetic-scaled:3", seed=4)
    plain.reset(), scaled.reset()
    actions = np.full((3, 2), 0.3)
    for _ in range(5):
        a, b = plain.step(actions), scaled.step(actions)
        assert b.reward == pytest.approx(a.reward * np.array([1.0, 10.0, 100.0]), rel=1e-6)
        assert np.array_equal(a.success, b.success)
