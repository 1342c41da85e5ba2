"""Hard sharing: one MLP for all tasks (MT-SAC), and a shared trunk with a head per task (MH-SAC).

Both take ``layer_norm=true``: a LayerNorm after each hidden Linear (before its ReLU), which keeps
wide critics' features at a fixed scale (Ball et al. 2023; Nauman et al. 2024).
"""

from __future__ import annotations

import torch
from torch import nn

from mtrl.agents.networks.layers import TaskLinear, flag, mlp, task_index


class SharedBody(nn.Module):
    """One MLP on state + one-hot (Yu et al. 2019's MT-SAC): every parameter is shared."""

    task_specific: tuple[str, ...] = ()

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        flag("shared", layer_norm=layer_norm)
        self.net = mlp(obs_dim, hidden_sizes, out_dim, layer_norm=layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, obs] -> [G, B, out]."""
        return self.net(x)

    def output_layer(self) -> nn.Module:
        return self.net[-1]


class MultiHeadBody(nn.Module):
    """Shared trunk, one output head per task (MH-SAC); a group uses its own task's head."""

    task_specific = ("heads.",)  # name prefixes of parameters that belong to one task each

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        flag("multihead", layer_norm=layer_norm)
        self.num_tasks = num_tasks
        self.trunk = mlp(obs_dim, hidden_sizes, layer_norm=layer_norm)
        self.heads = TaskLinear(num_tasks, hidden_sizes[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(x), task_index(x, self.num_tasks))

    def output_layer(self) -> nn.Module:
        return self.heads
