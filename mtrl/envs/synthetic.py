"""A tiny numpy multi-task env whose tasks conflict: learning tests run in seconds, not hours.

A point mass starts near the origin and must reach its task's goal on a circle of radius ~1; task
i's goal lies at angle 2*pi*i/T, so for T = 4 tasks 0 and 2 pull in opposite directions from the
same state. The observation holds the position and the one-hot but not the goal, so a shared policy
can only solve all tasks by reading the one-hot, and the per-task gradients genuinely disagree,
which is what the gradient methods (PCGrad, ...) exist to handle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mtrl.envs.base import EnvError, VecStep

DEFAULT_MAX_EPISODE_STEPS = 50


class SyntheticVecEnv:
    """T point-mass tasks stepped together with array operations (no loop over tasks).

    Rewards are ``-distance to goal`` plus ``success_bonus`` within ``success_radius`` of the goal
    (O(1) per step, so SAC's default scales work). The bonus is there because ``-distance`` alone
    barely separates 0.09 from 0.11: trained policies settled just outside the radius. Episodes
    truncate at ``max_episode_steps`` and terminate only with terminate-on-success.
    """

    action_dim = 2
    num_goals = 1  # each task has one fixed goal

    def __init__(
        self,
        num_tasks: int = 4,
        seed: int = 0,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        *,
        step_size: float = 0.1,
        goal_radius: float = 1.0,
        success_radius: float = 0.1,
        success_bonus: float = 1.0,
        start_noise: float = 0.05,
        arena: float = 1.5,
        render_size: int = 64,
        reward_scales: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        if num_tasks < 1:
            raise EnvError(f"the synthetic env needs num_tasks >= 1, got {num_tasks}")
        if max_episode_steps < 1:
            raise EnvError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
        self.task_names = [f"point-{i}" for i in range(num_tasks)]
        self.obs_dim = 2 + num_tasks
        self.max_episode_steps = max_episode_steps
        self.step_size = step_size
        self.success_radius = success_radius
        self.success_bonus = success_bonus
        self.start_noise = start_noise
        self.arena = arena  # positions are clipped to [-arena, arena]^2 so states stay bounded
        self.render_size = render_size
        # Per-task reward multipliers [T] (synthetic-scaled: 10^i); success does not depend on them.
        self.reward_scales = (
            np.ones(num_tasks)
            if reward_scales is None
            else np.asarray(reward_scales, dtype=np.float64)
        )
        if self.reward_scales.shape != (num_tasks,):
            raise EnvError(f"reward_scales must have {num_tasks} entries, got {reward_scales!r}")
        angles = 2.0 * np.pi * np.arange(num_tasks) / num_tasks  # [T]
        self.goals = goal_radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [T, 2]
        self._one_hot = np.eye(num_tasks, dtype=np.float32)  # [T, T]
        self._rng = np.random.default_rng(seed)
        self._pos = np.zeros((num_tasks, 2))  # [T, 2]
        self._elapsed = np.zeros(num_tasks, dtype=np.int64)  # [T]
        self._terminate_on_success = False

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def reset(self) -> np.ndarray:
        self._pos = self._start_positions(self.num_tasks)
        self._elapsed[:] = 0
        return self._observe(self._pos)

    def step(self, actions: np.ndarray) -> VecStep:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_tasks, self.action_dim):
            raise ValueError(
                f"actions must have shape {(self.num_tasks, self.action_dim)}, got {actions.shape}"
            )
        step = self.step_size * np.clip(actions, -1.0, 1.0)  # [T, 2]
        self._pos = np.clip(self._pos + step, -self.arena, self.arena)
        self._elapsed += 1
        distance = np.linalg.norm(self._pos - self.goals, axis=1)  # [T]
        success = distance <= self.success_radius
        terminated = success & self._terminate_on_success
        truncated = self._elapsed >= self.max_episode_steps
        next_obs = self._observe(self._pos)
        done = terminated | truncated
        if done.any():
            self._pos[done] = self._start_positions(int(done.sum()))
            self._elapsed[done] = 0
        return VecStep(
            obs=self._observe(self._pos),
            next_obs=next_obs,
            reward=(self.reward_scales * (self.success_bonus * success - distance)).astype(
                np.float32
            ),
            terminated=terminated,
            truncated=truncated,
            success=success,
        )

    def set_terminate_on_success(self, flag: bool) -> None:
        self._terminate_on_success = bool(flag)

    def set_goal_schedule(self, indices: Sequence[int] | None) -> None:
        """One goal per task: a schedule can only name goal 0."""
        if indices is not None and any(int(i) != 0 for i in indices):
            raise EnvError("the synthetic env has one goal per task; a schedule can only name 0")

    def state_dict(self) -> dict:
        """Positions, episode clocks and the start-position stream: enough to resume exactly.

        Tensors and plain data only, so that a checkpoint holding it loads with weights_only.
        """
        import torch

        return {
            "pos": torch.as_tensor(self._pos.copy()),
            "elapsed": torch.as_tensor(self._elapsed.copy()),
            "rng": self._rng.bit_generator.state,
            "terminate_on_success": self._terminate_on_success,
        }

    def load_state_dict(self, state: dict) -> None:
        pos = np.asarray(state["pos"], dtype=np.float64)
        if pos.shape != self._pos.shape:
            raise EnvError(f"env state holds {pos.shape[0]} tasks, this env has {self.num_tasks}")
        self._pos = pos.copy()
        self._elapsed = np.asarray(state["elapsed"], dtype=np.int64).copy()
        self._rng.bit_generator.state = state["rng"]
        self._terminate_on_success = bool(state["terminate_on_success"])

    def render(self, task_index: int) -> np.ndarray:
        """A top-down frame: grey arena, green success disc around the goal, red point."""
        if not 0 <= task_index < self.num_tasks:
            raise IndexError(f"task_index {task_index} out of range for {self.num_tasks} tasks")
        n = self.render_size
        coords = np.linspace(-self.arena, self.arena, n)
        x, y = np.meshgrid(coords, coords[::-1])  # [H, W]: row 0 is the top (largest y)
        frame = np.full((n, n, 3), 235, dtype=np.uint8)  # [H, W, 3]
        goal, pos = self.goals[task_index], self._pos[task_index]
        frame[np.hypot(x - goal[0], y - goal[1]) <= self.success_radius] = (60, 170, 60)
        point_radius = max(self.success_radius / 2, 2.5 * 2 * self.arena / n)
        frame[np.hypot(x - pos[0], y - pos[1]) <= point_radius] = (210, 40, 40)
        return frame

    def close(self) -> None:
        """Nothing to release; present for the protocol."""

    def __enter__(self) -> SyntheticVecEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start_positions(self, count: int) -> np.ndarray:
        return self._rng.uniform(-self.start_noise, self.start_noise, size=(count, 2))  # [n, 2]

    def _observe(self, pos: np.ndarray) -> np.ndarray:
        return np.concatenate([pos.astype(np.float32), self._one_hot], axis=1)  # [T, 2 + T]
