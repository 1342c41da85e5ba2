"""Actor and critic bodies, selectable by name (``agent.actor`` / ``agent.critic``).

Every body maps observations that end with the task one-hot to per-row outputs, as an ensemble of E
independent members (the twin critics are E = 2 members evaluated with one batched matmul per layer).
Task-specific parts select their task's output with the one-hot already in the observation, so the
same module works on a flat [N, obs] batch and, under ``torch.func.vmap``, on one task's [B, obs]
batch, and a task's loss never reaches another task's head.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: [E, N, in] -> [E, N, out]."""

    def __init__(self, ensemble: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)  # [E, N, out]


def _trunk(ensemble: int, in_dim: int, hidden_sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers += [EnsembleLinear(ensemble, in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class SharedBody(nn.Module):
    """Hard sharing (MT-SAC): one MLP on state + one-hot."""

    task_specific: tuple[str, ...] = ()  # every parameter is shared

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.trunk = _trunk(ensemble, obs_dim, hidden_sizes)
        self.head = EnsembleLinear(ensemble, hidden_sizes[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, obs] or [E, N, obs] -> [E, N, out]."""
        if x.dim() == 2:
            x = x.expand(self.ensemble, *x.shape)
        return self.head(self.trunk(x))


class MultiHeadBody(nn.Module):
    """Shared trunk, one output head per task (MH-SAC); row r uses the head of its own task."""

    task_specific = ("heads.",)  # name prefixes of parameters that belong to one task each

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.ensemble, self.num_tasks, self.out_dim = ensemble, num_tasks, out_dim
        self.trunk = _trunk(ensemble, obs_dim, hidden_sizes)
        # All T heads as one layer; the one-hot then picks each row's own head.
        self.heads = EnsembleLinear(ensemble, hidden_sizes[-1], num_tasks * out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.expand(self.ensemble, *x.shape)
        one_hot = x[..., -self.num_tasks :]  # [E, N, T]
        all_heads = self.heads(self.trunk(x))  # [E, N, T * out]
        all_heads = all_heads.unflatten(-1, (self.num_tasks, self.out_dim))  # [E, N, T, out]
        return (all_heads * one_hot.unsqueeze(-1)).sum(dim=-2)  # [E, N, out]


NetworkFactory = Callable[..., nn.Module]

NETWORKS: dict[str, NetworkFactory] = {
    "shared": SharedBody,
    "multihead": MultiHeadBody,
}


def make_network(
    name: str,
    obs_dim: int,
    out_dim: int,
    num_tasks: int,
    hidden_sizes: tuple[int, ...],
    ensemble: int = 1,
) -> nn.Module:
    return NETWORKS[name](obs_dim, out_dim, num_tasks, tuple(hidden_sizes), ensemble=ensemble)


def is_task_specific(body: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` of ``body`` belongs to single tasks (heads, towers, gates).

    Gradient methods combine only the shared parameters; a task-specific parameter receives each
    task's own gradient untouched (other tasks' gradients on it are zero by construction).
    """
    return name.startswith(tuple(getattr(body, "task_specific", ())))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
