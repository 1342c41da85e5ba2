"""FiLM (Perez et al., AAAI 2018, "FiLM: Visual Reasoning with a General Conditioning Layer"), as
multi-task RL uses it (rainx0r/mtrl's ``nn/film.py``, the CARE paper's FiLM baseline): every hidden
layer's pre-activation h is modulated feature-wise by the task, gamma_tau * h + beta_tau, then the
ReLU (where FiLM sits in Perez et al.'s residual blocks).

gamma and beta are computed from the task encoding by a linear FiLM generator; on the one-hot a
linear map without a bias is one (gamma, beta) per task and hidden unit, held here as that
[T, 2, sum of hidden widths] table, task-specific, so gradient methods never mix it. It starts at
gamma = 1, beta = 0: the network then is MT-SAC's MLP (which reads the one-hot too, as every body
here does), and each task learns its own modulation from there.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from mtrl.agents.networks.layers import task_index


class FiLMBody(nn.Module):
    """An MLP on state + one-hot whose hidden layers are each task's gamma * h + beta, then ReLU."""

    task_specific = ("modulation",)

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise((obs_dim, *hidden_sizes)))
        self.output = nn.Linear(hidden_sizes[-1], out_dim)
        self.widths = tuple(hidden_sizes)
        modulation = torch.zeros(num_tasks, 2, sum(hidden_sizes))
        modulation[:, 0] = 1.0  # gamma = 1, beta = 0: the identity
        self.modulation = nn.Parameter(modulation)

    def film(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each hidden layer's (gamma, beta) for the groups of x: [G, 1, width] each (one task's
        [width] in the per-task pass)."""
        if self.modulation.dim() == 2:  # one task's table (the per-task pass)
            table = self.modulation
        else:
            table = self.modulation[task_index(x, self.num_tasks)].unsqueeze(1)  # [G, 1, 2, W]
        gammas = table[..., 0, :].split(self.widths, -1)
        betas = table[..., 1, :].split(self.widths, -1)
        return list(zip(gammas, betas, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        film = self.film(x)
        for layer, (gamma, beta) in zip(self.hidden, film, strict=True):
            x = torch.relu(gamma * layer(x) + beta)
        return self.output(x)
