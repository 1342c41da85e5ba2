"""Per-task replay: every task keeps its own ring of transitions and every batch is stratified.

All tasks step together in the vector env, so one write adds one transition per task and all rings
share one cursor. A batch draws B indices per task in one call and gathers [T, B, ...] at once,
with no Python loop over tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


@dataclass(frozen=True)
class Batch:
    """A stratified replay batch: B transitions of every task, laid out [T, B, ...]."""

    obs: torch.Tensor  # [T, B, obs_dim]
    action: torch.Tensor  # [T, B, A]
    reward: torch.Tensor  # [T, B]
    next_obs: torch.Tensor  # [T, B, obs_dim]
    terminated: torch.Tensor  # [T, B] float: 1 where the episode truly ended


class TaskReplay:
    def __init__(
        self, num_tasks: int, obs_dim: int, action_dim: int, capacity_per_task: int, seed: int = 0
    ) -> None:
        self.num_tasks, self.capacity = num_tasks, capacity_per_task
        # One [T, N, F] tensor holds every field, so a write and a batch are one copy each rather
        # than one per field; ``storage`` names each field's view into it.
        widths = {  # None: one scalar per transition, a [T, N] view
            "obs": obs_dim,
            "action": action_dim,
            "reward": None,
            "next_obs": obs_dim,
            "terminated": None,
        }
        self._columns: dict[str, slice | int] = {}
        start = 0
        for name in _FIELDS:
            width = widths[name]
            self._columns[name] = start if width is None else slice(start, start + width)
            start += width or 1
        self._rows = torch.zeros(num_tasks, capacity_per_task, start)
        self.storage = {name: self._rows[..., cols] for name, cols in self._columns.items()}
        self._flat_rows = self._rows.view(num_tasks * capacity_per_task, start)  # [T * N, F]
        self._task_offsets = torch.arange(num_tasks).unsqueeze(1) * capacity_per_task  # [T, 1]
        # For a CUDA learner: batches are gathered into pinned memory and copied asynchronously;
        # the event says when the last copy has left the buffer.
        self._pinned: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None
        self.cursor = 0
        self.size = 0
        self.generator = torch.Generator().manual_seed(seed)

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
        row = np.concatenate(
            [obs, action, reward[:, None], next_obs, terminated[:, None]], axis=1, dtype=np.float32
        )  # [T, F], in _FIELDS order
        self._rows[:, self.cursor] = torch.from_numpy(row)
        self.cursor = (self.cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> Batch:
        """B transitions per task, drawn uniformly with replacement: a [T, B] batch."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        index = torch.randint(
            self.size, (self.num_tasks, batch_size), generator=self.generator
        )  # [T, B]
        flat = (index + self._task_offsets).view(-1)  # [T * B] rows of _flat_rows
        if torch.device(device).type == "cuda":
            rows = self._gather_to_cuda(flat, device)
        else:
            rows = self._flat_rows.index_select(0, flat)
        rows = rows.view(self.num_tasks, batch_size, -1)  # [T, B, F]
        return Batch(**{name: rows[..., cols] for name, cols in self._columns.items()})

    def _gather_to_cuda(self, flat: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        if self._pinned is None or self._pinned.shape[0] != flat.shape[0]:
            self._pinned = torch.empty(flat.shape[0], self._flat_rows.shape[1], pin_memory=True)
        elif self._copied is not None:
            self._copied.synchronize()  # the previous batch's copy has finished reading it
        torch.index_select(self._flat_rows, 0, flat, out=self._pinned)
        rows = self._pinned.to(device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return rows

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
        return self._rows.numel() * self._rows.element_size()
