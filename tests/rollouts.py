"""Shared by the env tests: step a vector env through a fixed action sequence."""

from __future__ import annotations

import numpy as np


def rollout(env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observations [N + 1, T, obs_dim] and rewards [N, T] for actions [N, T, A]."""
    obs = [env.reset()]
    rewards = []
    for action in actions:
        step = env.step(action)
        obs.append(step.obs)
        rewards.append(step.reward)
    return np.stack(obs), np.stack(rewards)
