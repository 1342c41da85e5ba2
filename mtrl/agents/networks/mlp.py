"""Hard sharing: one MLP for all tasks (MT-SAC), and a shared trunk with a head per task (MH-SAC)."""

from __future__ import annotations

import torch
from torch import nn

from mtrl.agents.networks.layers import TaskLinear, mlp, task_index


class SharedBody(nn.Module):
    """One MLP on state + one-hot (Yu et al. 2019's MT-SAC): every parameter is shared."""

    task_specific: tuple[str, ...] = ()

    def __init__(
        self, obs_dim: int, out_dim: int, num_tasks: int, hidden_sizes: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, obs] -> [G, B, out]."""
        return self.net(x)

    def output_layer(self) -> nn.Module:
        return self.net[-1]


class MultiHeadBody(nn.Module):
    """Shared trunk, one output head per task (MH-SAC); a group uses its own task's head."""

    task_specific = ("heads.",)  # name prefixes of parameters that belong to one task each

    def __init__(
        self, obs_dim: int, out_dim: int, num_tasks: int, hidden_sizes: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.trunk = mlp(obs_dim, hidden_sizes)
        self.heads = TaskLinear(num_tasks, hidden_sizes[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(x), task_index(x, self.num_tasks))

    def output_layer(self) -> nn.Module:
        return self.heads
