"""The synthetic env and the registry's synthetic path: shapes, seeding, episode semantics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rollouts import rollout

from mtrl.envs import EnvError, SyntheticVecEnv, is_metaworld, make_env, resolve_task_names


def toward_goal(env: SyntheticVecEnv, obs: np.ndarray) -> np.ndarray:
    """A scripted policy: full speed toward the goal, slowing down on the last step."""
    delta = env.goals - obs[:, :2]  # [T, 2]
    return np.clip(delta / env.step_size, -1.0, 1.0)


def test_shapes_dtypes_and_one_hot() -> None:
    env = SyntheticVecEnv(num_tasks=5, seed=0)
    obs = env.reset()
    assert obs.shape == (5, env.obs_dim) == (5, 7)
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:, 2:], np.eye(5, dtype=np.float32))
    step = env.step(np.zeros((5, 2)))
    for array in (step.obs, step.next_obs):
        assert array.shape == (5, 7) and array.dtype == np.float32
        np.testing.assert_array_equal(array[:, 2:], np.eye(5, dtype=np.float32))
    assert step.reward.shape == (5,) and step.reward.dtype == np.float32
    for flags in (step.terminated, step.truncated, step.success):
        assert flags.shape == (5,) and flags.dtype == bool


def test_tasks_conflict() -> None:
    env = SyntheticVecEnv(num_tasks=4)
    np.testing.assert_allclose(env.goals[0], -env.goals[2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(env.goals, axis=1), 1.0)
    # One action for every task (what a policy blind to the one-hot gives) helps 0 and hurts 2.
    env.reset()
    step = env.step(np.tile([1.0, 0.0], (4, 1)))
    start_reward = -1.0
    assert step.reward[0] > start_reward + 0.05 > step.reward[2] + 0.1


def test_same_seed_same_rollout_different_seed_differs() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, size=(120, 4, 2))
    obs_a, rew_a = rollout(SyntheticVecEnv(seed=3, max_episode_steps=50), actions)
    obs_b, rew_b = rollout(SyntheticVecEnv(seed=3, max_episode_steps=50), actions)
    obs_c, _ = rollout(SyntheticVecEnv(seed=4, max_episode_steps=50), actions)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    assert not np.array_equal(obs_a, obs_c)


def test_scripted_policy_succeeds_with_dense_reward() -> None:
    env = SyntheticVecEnv(num_tasks=4, seed=0)
    obs = env.reset()
    assert np.all(env.step(np.zeros((4, 2))).reward < -0.9)  # far from every goal at the start
    successes = np.zeros(4, dtype=bool)
    for _ in range(15):
        step = env.step(toward_goal(env, obs))
        successes |= step.success
        obs = step.obs
    assert successes.all()
    assert np.all(step.reward >= env.success_bonus - env.success_radius)
    assert not step.terminated.any()  # no termination unless terminate-on-success is on


def test_truncation_gives_final_obs_and_resets() -> None:
    env = SyntheticVecEnv(num_tasks=3, seed=0, max_episode_steps=10)
    obs = env.reset()
    for t in range(1, 11):
        step = env.step(np.ones((3, 2)))
        assert step.truncated.all() == (t == 10)
        if t < 10:
            np.testing.assert_array_equal(step.next_obs, step.obs)
            obs = step.obs
    # The final obs continues the trajectory (moved by one step); obs is a fresh start near 0.
    np.testing.assert_allclose(step.next_obs[:, :2], obs[:, :2] + env.step_size, atol=1e-6)
    assert np.all(np.abs(step.obs[:, :2]) <= env.start_noise)
    assert not step.terminated.any()
    assert not env.step(np.zeros((3, 2))).truncated.any()  # a new episode has begun


def test_terminate_on_success() -> None:
    env = SyntheticVecEnv(num_tasks=4, seed=0)
    env.set_terminate_on_success(True)
    obs = env.reset()
    ended = np.zeros(4, dtype=bool)
    for _ in range(15):
        step = env.step(toward_goal(env, obs))
        np.testing.assert_array_equal(step.terminated, step.success)
        assert not step.truncated.any()
        ended |= step.terminated
        obs = step.obs
    assert ended.all()
    env.set_terminate_on_success(False)
    obs = env.reset()
    for _ in range(15):
        step = env.step(toward_goal(env, obs))
        assert not step.terminated.any()
        obs = step.obs


def test_actions_are_clipped() -> None:
    big, unit = SyntheticVecEnv(seed=1), SyntheticVecEnv(seed=1)
    big.reset(), unit.reset()
    np.testing.assert_array_equal(
        big.step(np.full((4, 2), 50.0)).obs, unit.step(np.ones((4, 2))).obs
    )
    with pytest.raises(ValueError, match="shape"):
        big.step(np.zeros((3, 2)))


@settings(max_examples=25, deadline=None)
@given(
    num_tasks=st.integers(1, 12),
    seed=st.integers(0, 2**31),
    scale=st.floats(0.0, 10.0),
)
def test_reward_is_bonus_minus_distance_and_state_stays_in_arena(
    num_tasks: int, seed: int, scale: float
) -> None:
    env = SyntheticVecEnv(num_tasks=num_tasks, seed=seed, max_episode_steps=30)
    env.reset()
    rng = np.random.default_rng(seed)
    for _ in range(40):
        step = env.step(scale * rng.standard_normal((num_tasks, 2)))
        distance = np.linalg.norm(step.next_obs[:, :2] - env.goals, axis=1)
        np.testing.assert_allclose(
            step.reward, step.success * env.success_bonus - distance, atol=1e-5
        )
        assert np.all(np.abs(step.next_obs[:, :2]) <= env.arena)
        np.testing.assert_array_equal(step.success, distance <= env.success_radius + 1e-6)


def test_render_draws_goal_and_point() -> None:
    env = SyntheticVecEnv(num_tasks=4, seed=0, render_size=64)
    env.reset()
    frame = env.render(1)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    green = np.all(frame == (60, 170, 60), axis=-1)
    red = np.all(frame == (210, 40, 40), axis=-1)
    rows, cols = np.nonzero(green)
    assert red.any() and green.any()
    assert rows.mean() < 32 and abs(cols.mean() - 32) < 3  # task 1's goal is straight up
    with pytest.raises(IndexError):
        env.render(4)


def test_registry_synthetic_names_and_defaults() -> None:
    assert resolve_task_names("synthetic") == ["point-0", "point-1", "point-2", "point-3"]
    assert resolve_task_names("synthetic:8") == [f"point-{i}" for i in range(8)]
    assert not is_metaworld("synthetic") and not is_metaworld("synthetic:8")
    assert is_metaworld("MT10") and is_metaworld("reach-v3")
    env = make_env("synthetic:3", seed=0)
    assert env.num_tasks == 3 and env.max_episode_steps == 50 and env.obs_dim == 5
    assert make_env("synthetic", seed=0, max_episode_steps=7).max_episode_steps == 7
    for bad in ("synthetic:0", "synthetic:x", "synthetic:"):
        with pytest.raises(EnvError):
            resolve_task_names(bad)
    with pytest.raises(EnvError, match="vector"):
        make_env("synthetic", seed=0, vector="threads")


def test_import_and_synthetic_do_not_load_mujoco() -> None:
    code = (
        "import sys; from mtrl.envs import make_env; make_env('synthetic', 0).reset(); "
        "assert 'mujoco' not in sys.modules and 'metaworld' not in sys.modules, 'loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
