"""PaCo (Sun et al., NeurIPS 2022, "PaCo: Parameter-Compositional Multi-Task Reinforcement
Learning"): K shared parameter vectors Phi = [phi_1 .. phi_K] and one compositional vector
w_tau in R^K per task; task tau's network has the parameters theta_tau = Phi w_tau.

Each layer of the network (hidden_sizes, then the output layer) holds its K versions of the weight
and bias ([K, in, out], [K, out]: together the K columns of Phi); a task's layer is their
combination by its w_tau, computed once per group and applied as one matmul. Phi is shared by all
tasks, w (a [T, K] table, the task encoder of the one-hot without a bias) is task-specific, so
gradient methods combine the tasks' gradients on Phi only. The network reads the state; the task
enters through w_tau.

The paper's stabilisation (loss masking and w-reset of a task whose loss diverges) is not part of
this body.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from mtrl.agents.networks.layers import positive, task_index


class CompositionalLinear(nn.Module):
    """K linear layers' parameters, combined per task: weight [K, in, out], bias [K, out]."""

    def __init__(self, sets: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(sets, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(sets, out_features))
        bound = 1.0 / math.sqrt(in_features)  # each set as nn.Linear initialises a layer
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def composed(self, composition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer of compositional vectors [..., K]: weight [..., in, out], bias [..., out]."""
        weight = torch.einsum("...k,kio->...io", composition, self.weight)
        return weight, composition @ self.bias

    def forward(self, x: torch.Tensor, composition: torch.Tensor) -> torch.Tensor:
        """x [G, B, in] with compositions [G, K] (or one task's [K]) -> [G, B, out]."""
        weight, bias = self.composed(composition)
        if composition.dim() == 1:
            return x @ weight + bias
        return torch.baddbmm(bias.unsqueeze(1), x, weight)


class PaCoBody(nn.Module):
    """An MLP (hidden_sizes, ReLU, linear output) whose every layer is a per-task composition of
    ``sets`` (K) shared parameter sets."""

    task_specific = ("compositions",)

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        sets: int = 5,
    ) -> None:
        super().__init__()
        positive("paco", sets=sets)
        self.num_tasks = num_tasks
        widths = (obs_dim - num_tasks, *hidden_sizes, out_dim)
        self.layers = nn.ModuleList(CompositionalLinear(sets, a, b) for a, b in pairwise(widths))
        # Entries of variance 1/K: a composed layer starts at the scale of one set (nn.Linear's).
        self.compositions = nn.Parameter(torch.empty(num_tasks, sets))
        bound = math.sqrt(3.0 / sets)
        nn.init.uniform_(self.compositions, -bound, bound)

    def task_layers(self, task: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Task ``task``'s own network: each layer's (weight [in, out], bias [out]) = Phi w."""
        return [layer.composed(self.compositions[task]) for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.compositions.dim() == 1:  # one task's vector (the per-task pass)
            composition = self.compositions
        else:
            composition = self.compositions[task_index(x, self.num_tasks)]  # [G, K]
        x = x[..., : -self.num_tasks]
        last = len(self.layers) - 1
        for k, layer in enumerate(self.layers):
            x = layer(x, composition)
            if k < last:
                x = torch.relu(x)
        return x
