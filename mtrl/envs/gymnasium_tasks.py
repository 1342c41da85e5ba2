"""A gymnasium vector env, one sub-env per task, as the ``MultiTaskVecEnv`` the trainer steps.

For users who bring their own tasks (``mtrl.train(config, env=GymnasiumTasks(vector_env, names))``):
sub-env i runs task i, its observations already end with the task one-hot, and its ``info`` has
``success`` (as Meta-World's does). The vector env must reset finished sub-envs in the same step
(``autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP``), so that each step's transition and
the next observation to act on are both known, as the TD target needs (``VecStep``).

What such an env cannot do, and how the adapter answers: it has one "goal" per task (Meta-World's
50-goal evaluation cycle does not apply); an evaluation's episodes run to the sub-env's own end
instead of stopping at the first success (the adapter cannot end a sub-env's episode early, and
success at any step is what counts either way, so only the returns differ); it does not render.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtrl.envs.base import EnvError, VecStep


class GymnasiumTasks:
    """``vector_env``: a gymnasium ``VectorEnv`` of ``len(task_names)`` sub-envs, sub-env i on
    task i, Box observation (state + one-hot) and Box actions in [-1, 1]."""

    num_goals = 1

    def __init__(
        self,
        vector_env: Any,
        task_names: Sequence[str],
        max_episode_steps: int | None = None,
        seed: int | None = None,
    ) -> None:
        import gymnasium

        self.vector_env = vector_env
        self.task_names = [str(name) for name in task_names]
        if getattr(vector_env, "num_envs", None) != len(self.task_names):
            raise EnvError(
                f"the vector env has {getattr(vector_env, 'num_envs', '?')} sub-envs for "
                f"{len(self.task_names)} task names: one sub-env per task"
            )
        mode = vector_env.metadata.get("autoreset_mode")
        if mode not in (gymnasium.vector.AutoresetMode.SAME_STEP, "SameStep"):
            raise EnvError(
                "the vector env must reset finished sub-envs in the same step: build it with "
                "autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP"
            )
        observation, action = vector_env.single_observation_space, vector_env.single_action_space
        if len(observation.shape) != 1 or len(action.shape) != 1:
            raise EnvError("GymnasiumTasks needs flat Box observations and actions")
        self.obs_dim = int(observation.shape[0])
        self.action_dim = int(action.shape[0])
        if self.obs_dim <= self.num_tasks:
            raise EnvError(
                f"observations of {self.obs_dim} cannot end with a {self.num_tasks} one-hot"
            )
        spec = getattr(vector_env, "spec", None)
        self.max_episode_steps = int(
            max_episode_steps or getattr(spec, "max_episode_steps", 0) or 0
        )
        self.seed = seed

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def reset(self) -> np.ndarray:
        obs, _ = self.vector_env.reset(seed=self.seed)
        self.seed = None  # seeded once: later resets continue the sub-envs' streams
        return np.asarray(obs, dtype=np.float32)

    def step(self, actions: np.ndarray) -> VecStep:
        obs, reward, terminated, truncated, info = self.vector_env.step(np.asarray(actions))
        obs = np.asarray(obs, dtype=np.float32)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        success = np.asarray(info.get("success", np.zeros(self.num_tasks)), dtype=float) > 0
        next_obs = obs.copy()
        done = terminated | truncated
        if done.any():  # SAME_STEP: obs and info are the next episode's; its end is in final_*
            final = info["final_obs"]
            final_success = info.get("final_info", {}).get("success")
            for index in np.flatnonzero(done):
                next_obs[index] = np.asarray(final[index], dtype=np.float32)
                if final_success is not None:
                    success[index] = bool(final_success[index])
        return VecStep(
            obs, next_obs, np.asarray(reward, np.float32), terminated, truncated, success
        )

    def set_terminate_on_success(self, flag: bool) -> None:
        """Episodes always run to the sub-env's own end (see the module's docstring)."""

    def set_goal_schedule(self, indices: Sequence[int] | None) -> None:
        """One goal per task: every scheduled episode runs on it."""

    def render(self, task_index: int) -> np.ndarray:
        raise EnvError("GymnasiumTasks does not render; record videos with the env itself")

    def close(self) -> None:
        self.vector_env.close()
