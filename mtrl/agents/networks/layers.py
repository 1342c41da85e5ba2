"""Building blocks that stay cheap under the per-task ``torch.func.vmap`` gradient pass.

Two rules make a network fast there (measured in benchmarks/gradient_step.py):

- A shared layer is a plain 2-D weight applied with one matmul. Under vmap over tasks the task
  dimension then folds into the rows (one [T*B, in] @ [in, out] product); a batched 3-D weight
  (an ensemble as one ``bmm``) is instead expanded T times and copied, a large share of the
  per-task pass. The twin critics are therefore two members, not one stacked tensor.
- A task-specific parameter keeps the task on its first dimension ([T, ...]). The per-task pass
  hands each task only its own slice (``in_dims=0``), so its gradient is [T, ...], the size of
  the parameter, instead of a [T, T, ...] block that is zero off the diagonal.

Inputs are grouped: x [G, B, features], every row of group g from one task (the replay batch is
[T, B]; one env row per group when acting). A task-specific layer looks up each group's task from
the one-hot, which every observation ends with.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm on an fp32 input. Under bf16 autocast a Linear hands it bf16, and the per-task
    vmap pass then fails in its backward ("expected scalar type BFloat16 but found Float", torch
    2.13; without vmap it works); normalising in fp32 is what autocast does anyway. A no-op in
    fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float())


def positive(name: str, **values: int) -> None:
    """Raises ValueError naming the network and option unless each value is an integer >= 1."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")


def flag(name: str, **values: bool) -> None:
    """Raises ValueError naming the network and option unless each value is a boolean (YAML
    true/false), so ``layer_norm=yes please`` fails instead of counting as true."""
    for key, value in values.items():
        if not isinstance(value, bool):
            raise ValueError(f"{name}: {key} must be true or false, got {value!r}")


def task_index(x: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """The task of each group of x [G, B, obs] (its one-hot is the last T features) -> [G]."""
    return x[:, 0, -num_tasks:].argmax(-1)


class TaskLinear(nn.Module):
    """One linear layer per task: weight [T, in, out], bias [T, out]; group g uses its task's.

    Under the per-task pass the module holds one task's slice ([in, out], [out]) and applies it.
    """

    task_specific = ("weight", "bias")  # all of it: a network that uses one is covered

    def __init__(self, num_tasks: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tasks, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_tasks, out_features))
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """x [G, B, in], task [G] -> [G, B, out]."""
        if self.weight.dim() == 2:  # one task's slice (the per-task pass)
            return x @ self.weight + self.bias
        return torch.baddbmm(self.bias[task].unsqueeze(1), x, self.weight[task])


def he_uniform_init(body: nn.Module, output_layer: nn.Module, output_bound: float) -> None:
    """McLean et al. 2025's initialisation (rainx0r/mtrl, after the Flax defaults they set): every
    hidden weight He-uniform (bound sqrt(6 / fan_in), which keeps ReLU activations at unit scale),
    biases zero, and the output layer uniform in +-``output_bound`` (weights and bias) so that the
    first actions and Q-values start near zero instead of wherever a random projection puts them."""
    with torch.no_grad():
        for module in body.modules():
            if isinstance(module, (nn.Linear, TaskLinear)):
                fan_in = module.weight.shape[-1 if isinstance(module, nn.Linear) else -2]
                bound = math.sqrt(6.0 / fan_in)
                module.weight.uniform_(-bound, bound)
                module.bias.zero_()
        output_layer.weight.uniform_(-output_bound, output_bound)
        output_layer.bias.uniform_(-output_bound, output_bound)


def mlp(
    in_dim: int, sizes: tuple[int, ...], out_dim: int | None = None, layer_norm: bool = False
) -> nn.Sequential:
    """Linear + ReLU per width in ``sizes`` (Linear + LayerNorm + ReLU with ``layer_norm``: RLPD's
    critic, Ball et al. 2023, the critic regulariser Nauman et al. 2024 found most effective);
    then a plain linear output layer if out_dim is set, so ``[-1]`` is still the last Linear."""
    layers: list[nn.Module] = []
    for width in sizes:
        norm = [LayerNorm(width)] if layer_norm else []
        layers += [nn.Linear(in_dim, width), *norm, nn.ReLU()]
        in_dim = width
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class TaskMLP(nn.Module):
    """An MLP per task (task-specific experts and towers): TaskLinear + ReLU per width."""

    def __init__(
        self, num_tasks: int, in_dim: int, sizes: tuple[int, ...], out_dim: int | None = None
    ) -> None:
        super().__init__()
        widths = (in_dim, *sizes) + ((out_dim,) if out_dim is not None else ())
        self.layers = nn.ModuleList(TaskLinear(num_tasks, a, b) for a, b in pairwise(widths))
        self.relu_last = out_dim is None

    def forward(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x, task)
            if k < len(self.layers) - 1 or self.relu_last:
                x = torch.relu(x)
        return x


class Ensemble(nn.Module):
    """E independent members on the same input (the twin critics): [G, B, in] -> [E, G, B, out]."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members])
