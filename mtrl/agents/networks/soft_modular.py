"""Soft modularization (Yang et al. 2020, "Multi-Task Reinforcement Learning with Soft
Modularization"), the soft-sharing network MTRL papers compare against.

A base network of L layers of m modules; a routing network turns the state embedding f(s) times the
task embedding h(z) into, for each pair of consecutive layers, an m x m matrix of softmax weights
(Eq. 2-3 of the paper: p^1 = W_d^1 ReLU(f(s) h(z)), p^{l+1} = W_d^{l+1} ReLU(W_u^l p^l * f(s) h(z))).
Module j of layer l+1 takes sum_i softmax_i(p^l_{j,i}) times module i's output of layer l. The
last layer's module outputs are averaged and a linear output layer follows.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from mtrl.agents.networks.layers import positive


class SoftModularBody(nn.Module):
    """Module layer k has width hidden_sizes[k]; the embeddings have width hidden_sizes[0]."""

    task_specific: tuple[str, ...] = ()  # every module is shared; routing is per (state, task)

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        modules: int = 4,
    ) -> None:
        super().__init__()
        positive("soft_modular", modules=modules)
        if len(hidden_sizes) < 2:
            raise ValueError("soft_modular: needs two or more hidden layers (module layers)")
        self.num_tasks, self.num_modules = num_tasks, modules
        embed = hidden_sizes[0]
        self.state_embedding = nn.Linear(obs_dim - num_tasks, embed)
        self.task_embedding = nn.Linear(num_tasks, embed, bias=False)
        widths = (embed, *hidden_sizes)
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.Linear(a, b) for _ in range(modules)) for a, b in pairwise(widths)
        )
        routes = len(hidden_sizes) - 1
        self.route_down = nn.ModuleList(nn.Linear(embed, modules * modules) for _ in range(routes))
        self.route_up = nn.ModuleList(
            nn.Linear(modules * modules, embed) for _ in range(routes - 1)
        )
        self.output = nn.Linear(hidden_sizes[-1], out_dim)

    def routing(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per pair of module layers, each row's [m, m] weights; row j sums to 1 over inputs i."""
        state, one_hot = x[..., : -self.num_tasks], x[..., -self.num_tasks :]
        context = self.state_embedding(state) * self.task_embedding(one_hot)  # [G, B, D]
        logits, weights = None, []
        for k, down in enumerate(self.route_down):
            hidden = context if logits is None else self.route_up[k - 1](logits) * context
            logits = down(torch.relu(hidden))  # [G, B, m * m]
            weights.append(torch.softmax(logits.unflatten(-1, (self.num_modules,) * 2), -1))
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x[..., : -self.num_tasks]
        base = torch.relu(self.state_embedding(state))  # [G, B, D]
        outputs = [torch.relu(module(base)) for module in self.layers[0]]
        for layer, weights in zip(self.layers[1:], self.routing(x), strict=True):
            stacked = torch.stack(outputs, -2)  # [G, B, m(inputs), d]
            inputs = weights @ stacked  # [G, B, m(outputs), d]
            outputs = [torch.relu(module(inputs[..., j, :])) for j, module in enumerate(layer)]
        return self.output(torch.stack(outputs, -2).mean(-2))
