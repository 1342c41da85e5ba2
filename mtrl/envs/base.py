"""The one interface the trainer sees: T tasks stepped together, one environment per task.

Every task set (Meta-World, synthetic) is wrapped into this shape so that the trainer, evaluation and
replay never branch on the suite. Row i of every array belongs to task i (``task_names[i]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mtrl.errors import EnvError as EnvError  # raised by every env; re-exported here


@dataclass(frozen=True)
class VecStep:
    """The result of stepping all T tasks once.

    ``obs`` is what to act on next: where an episode ended it is already the first observation of the
    next episode. ``next_obs`` is the true successor of this transition (the final observation where
    an episode ended), which is what the TD target needs.
    """

    obs: np.ndarray  # [T, obs_dim] float32
    next_obs: np.ndarray  # [T, obs_dim] float32
    reward: np.ndarray  # [T] float32
    terminated: np.ndarray  # [T] bool: a true terminal state, the TD target stops here
    truncated: np.ndarray  # [T] bool: time limit, the TD target bootstraps
    success: np.ndarray  # [T] bool: the task's success flag at this step


class MultiTaskVecEnv(Protocol):
    """T environments, env i always runs task i; observations end with the task one-hot."""

    task_names: list[str]
    obs_dim: int  # state dimension + T (the one-hot)
    action_dim: int
    max_episode_steps: int
    num_goals: int  # training goals per task (Meta-World: 50, fixed by the seed; synthetic: 1)

    @property
    def num_tasks(self) -> int: ...

    def reset(self) -> np.ndarray:
        """Start a fresh episode on every task; returns obs [T, obs_dim] float32."""
        ...

    def step(self, actions: np.ndarray) -> VecStep:
        """actions [T, action_dim] in [-1, 1]; episodes that end are reset automatically."""
        ...

    def set_terminate_on_success(self, flag: bool) -> None:
        """Evaluation ends an episode at its first success (Meta-World's evaluation protocol)."""
        ...

    def set_goal_schedule(self, indices: Sequence[int] | None) -> None:
        """From the next reset on, each task's k-th episode runs on its goal ``indices[k % n]``
        (Meta-World's evaluation protocol: every training goal once); None: a random goal at each
        reset again, as in training."""
        ...

    def render(self, task_index: int) -> np.ndarray:
        """An RGB frame [H, W, 3] uint8 of one task's environment (only if built for rendering)."""
        ...

    def close(self) -> None: ...
