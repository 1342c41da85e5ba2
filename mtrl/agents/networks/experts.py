"""Mixtures of experts with per-task gates: MMoE (Ma et al. 2018), CGC and PLE (Tang et al. 2020).

In supervised MTL every sample is labelled for every task; in multi-task RL a row belongs to one task,
so a row only ever needs its own task's gate, experts and tower. That shapes one adaptation, in PLE:
the shared gate of an intermediate level mixes the shared experts with the row's own task experts
(the other tasks' branches of that row would never reach its output).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from mtrl.agents.networks.layers import (
    TaskLinear,
    TaskMLP,
    mlp,
    positive,
    task_index,
)


def _mix(gate_logits: torch.Tensor, expert_outputs: list[torch.Tensor]) -> torch.Tensor:
    """softmax(gate) [G, B, K] times K expert outputs [G, B, d] -> [G, B, d]."""
    gate = torch.softmax(gate_logits, -1)
    return (gate.unsqueeze(-1) * torch.stack(expert_outputs, -2)).sum(-2)


class MMoEBody(nn.Module):
    """K expert MLPs shared by all tasks, a softmax gate per task over them, a tower per task."""

    task_specific = ("gates.", "towers.")

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        experts: int = 4,
    ) -> None:
        super().__init__()
        positive("mmoe", experts=experts)
        self.num_tasks = num_tasks
        self.experts = nn.ModuleList(mlp(obs_dim, hidden_sizes) for _ in range(experts))
        self.gates = TaskLinear(num_tasks, obs_dim, experts)
        self.towers = TaskLinear(num_tasks, hidden_sizes[-1], out_dim)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's distribution over the experts: [G, B, K]."""
        return torch.softmax(self.gates(x, task_index(x, self.num_tasks)), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task = task_index(x, self.num_tasks)
        mixed = _mix(self.gates(x, task), [expert(x) for expert in self.experts])
        return self.towers(mixed, task)


class CGCBody(nn.Module):
    """Customized gate control: each task mixes its own experts and the shared experts."""

    task_specific = ("task_experts.", "gates.", "towers.")

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        shared_experts: int = 2,
        task_experts: int = 1,
    ) -> None:
        super().__init__()
        positive("cgc", shared_experts=shared_experts, task_experts=task_experts)
        self.num_tasks = num_tasks
        self.shared_experts = nn.ModuleList(
            mlp(obs_dim, hidden_sizes) for _ in range(shared_experts)
        )
        self.task_experts = nn.ModuleList(
            TaskMLP(num_tasks, obs_dim, hidden_sizes) for _ in range(task_experts)
        )
        self.gates = TaskLinear(num_tasks, obs_dim, task_experts + shared_experts)
        self.towers = TaskLinear(num_tasks, hidden_sizes[-1], out_dim)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.gates(x, task_index(x, self.num_tasks)), -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task = task_index(x, self.num_tasks)
        outputs = [expert(x, task) for expert in self.task_experts]
        outputs += [expert(x) for expert in self.shared_experts]
        return self.towers(_mix(self.gates(x, task), outputs), task)


class _ExtractionLevel(nn.Module):
    """One PLE level: one-layer experts (shared and per task), a gate per task, a shared gate."""

    def __init__(
        self,
        num_tasks: int,
        in_dim: int,
        width: int,
        shared_experts: int,
        task_experts: int,
        shared_gate: bool,
    ) -> None:
        super().__init__()
        self.shared_experts = nn.ModuleList(nn.Linear(in_dim, width) for _ in range(shared_experts))
        self.task_experts = nn.ModuleList(
            TaskLinear(num_tasks, in_dim, width) for _ in range(task_experts)
        )
        self.task_gates = TaskLinear(num_tasks, in_dim, task_experts + shared_experts)
        self.shared_gate = nn.Linear(in_dim, task_experts + shared_experts) if shared_gate else None

    def forward(
        self, task_rep: torch.Tensor, shared_rep: torch.Tensor, task: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        own = [torch.relu(expert(task_rep, task)) for expert in self.task_experts]
        shared = [torch.relu(expert(shared_rep)) for expert in self.shared_experts]
        task_out = _mix(self.task_gates(task_rep, task), own + shared)
        if self.shared_gate is None:
            return task_out, shared_rep
        return task_out, _mix(self.shared_gate(shared_rep), own + shared)


class PLEBody(nn.Module):
    """Progressive layered extraction: one extraction level per hidden width, then a tower per
    task. Each level's task representation feeds the next level's task experts and gate, its
    shared representation the next shared experts and shared gate."""

    task_specific = ("towers.",)  # and each level's task experts and gates (TaskLinear)

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        shared_experts: int = 2,
        task_experts: int = 1,
    ) -> None:
        super().__init__()
        positive("ple", shared_experts=shared_experts, task_experts=task_experts)
        self.num_tasks = num_tasks
        widths = (obs_dim, *hidden_sizes)
        self.levels = nn.ModuleList(
            _ExtractionLevel(
                num_tasks, a, b, shared_experts, task_experts, k < len(hidden_sizes) - 1
            )
            for k, (a, b) in enumerate(pairwise(widths))
        )
        self.towers = TaskLinear(num_tasks, hidden_sizes[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task = task_index(x, self.num_tasks)
        task_rep = shared_rep = x
        for level in self.levels:
            task_rep, shared_rep = level(task_rep, shared_rep, task)
        return self.towers(task_rep, task)
