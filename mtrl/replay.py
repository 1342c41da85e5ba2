"""Per-task replay: every task keeps its own ring of transitions and every batch is stratified.

All tasks step together in the vector env, so one write adds one transition per task and all rings
share one cursor. A batch draws B indices per task in one call and gathers [T, B, ...] at once,
with no Python loop over tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtrl.agents.sac import Batch

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class TaskReplay:
    def __init__(
        self, num_tasks: int, obs_dim: int, action_dim: int, capacity_per_task: int, seed: int = 0
    ) -> None:
        self.num_tasks, self.capacity = num_tasks, capacity_per_task
        shape = (num_tasks, capacity_per_task)
        self.storage = {
            "obs": torch.zeros(*shape, obs_dim),
            "action": torch.zeros(*shape, action_dim),
            "reward": torch.zeros(*shape),
            "next_obs": torch.zeros(*shape, obs_dim),
            "terminated": torch.zeros(*shape),
        }
        self.cursor = 0
        self.size = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._task_rows = torch.arange(num_tasks).unsqueeze(1)  # [T, 1]

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs: np.ndarray,  # [T, obs_dim]
        action: np.ndarray,  # [T, A]
        reward: np.ndarray,  # [T]
        next_obs: np.ndarray,  # [T, obs_dim]
        terminated: np.ndarray,  # [T]
    ) -> None:
        values = (obs, action, reward, next_obs, terminated)
        for name, value in zip(_FIELDS, values, strict=True):
            self.storage[name][:, self.cursor] = torch.as_tensor(value, dtype=torch.float32)
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        """B transitions per task, drawn uniformly with replacement: a [T, B] batch."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        index = torch.randint(
            self.size, (self.num_tasks, batch_size), generator=self.generator
        )  # [T, B]
        gathered = {name: data[self._task_rows, index] for name, data in self.storage.items()}
        return Batch(**{k: v.to(device, non_blocking=True) for k, v in gathered.items()})

    def state_dict(self) -> dict[str, Any]:
        """Only the filled part is saved: a young run's checkpoint stays small."""
        return {
            "storage": {name: data[:, : self.size].clone() for name, data in self.storage.items()},
            "cursor": self.cursor,
            "size": self.size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"replay state holds {size} transitions, capacity is {self.capacity}")
        for name, data in self.storage.items():
            saved = state["storage"][name]
            if saved.shape[0] != self.num_tasks or saved.shape[2:] != data.shape[2:]:
                raise ValueError(f"replay state '{name}' has shape {tuple(saved.shape)}")
            data[:, :size] = saved
        self.cursor, self.size = int(state["cursor"]), size
        self.generator.set_state(state["generator"])

    def nbytes(self) -> int:
        """Bytes of the full buffer (what a checkpoint with the replay holds when it is full)."""
        return sum(data.numel() * data.element_size() for data in self.storage.values())
