"""PaCo (Sun et al., NeurIPS 2022, "PaCo: Parameter-Compositional Multi-Task Reinforcement
Learning"): K shared parameter vectors Phi = [phi_1 .. phi_K] and one compositional vector
w_tau in R^K per task; task tau's network has the parameters theta_tau = Phi w_tau.

Each layer of the network (hidden_sizes, then the output layer) holds its K versions of the weight
and bias ([K, in, out], [K, out]: together the K columns of Phi); a task's layer is their
combination by its w_tau, computed once per group and applied as one matmul. Phi is shared by all
tasks, w (a [T, K] table, the task encoder of the one-hot without a bias) is task-specific, so
gradient methods combine the tasks' gradients on Phi only. The network reads the state; the task
enters through w_tau.

The paper's stabilisation, as an option: with ``reset_threshold=L`` (off by default), a task whose
critic loss (``per_task/critic_loss``, the twin critics' summed mean squared TD error on the
update's batch) exceeds L has its w_tau reset, after that update, to a random convex combination of
the other tasks' vectors: weights drawn uniform in [0, 1) and normalised to sum 1, from torch's
global generator (seeded by the run, saved in its checkpoints). The tasks below L are the "others";
when every task exceeds L there is none to combine and nothing is reset. One draw per reset task
serves every PaCo body with that threshold (actor, both critics, their targets: each combines its
own vectors by it), as the reference's one task encoder serves actor and critic; the agent counts
the reset tasks in ``charts/paco_resets``. The reference (TToTMooN/paco-mtrl, threshold 3e3)
compares each task's total loss (actor, critic and temperature) and also zeroes that task's loss in
the very update that shows it above L. Here a task's loss is known only inside the gradient step,
so that update has already been taken (within ``agent.grad_clip_norm``) when the reset follows;
the later updates train the task with its new vector, as the reference's do. Like the reference,
the optimisers' moments of w are kept.
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
    uncounted_options = ("reset_threshold",)  # a loss, not a size: no bound from mtrl.limits

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        sets: int = 5,
        reset_threshold: float | None = None,
    ) -> None:
        super().__init__()
        positive("paco", sets=sets)
        if reset_threshold is not None and (
            isinstance(reset_threshold, bool)
            or not isinstance(reset_threshold, (int, float))
            or not 0 < reset_threshold < math.inf
        ):
            raise ValueError(
                "paco: reset_threshold must be a positive number such as 3000, "
                f"got {reset_threshold!r}"
            )
        self.num_tasks = num_tasks
        self.reset_threshold = None if reset_threshold is None else float(reset_threshold)
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


def resettable_bodies(*networks: nn.Module) -> list[PaCoBody]:
    """The PaCo bodies in ``networks`` that reset diverging tasks (``reset_threshold`` set)."""
    return [
        body
        for network in networks
        for body in network.modules()
        if isinstance(body, PaCoBody) and body.reset_threshold is not None
    ]


def reset_diverging_tasks(bodies: list[PaCoBody], losses: torch.Tensor) -> int:
    """Resets, in ``bodies``, the compositional vector of each task whose loss (``losses`` [T])
    exceeds the body's threshold to a random convex combination of the other tasks' vectors;
    returns how many tasks were reset (in any body)."""
    reset = torch.zeros(len(losses), dtype=torch.bool)
    losses = losses.detach().cpu()
    for threshold in sorted({body.reset_threshold for body in bodies}):
        diverged = losses > threshold
        if not diverged.any() or diverged.all():  # nothing diverged, or none to combine
            continue
        mixing = torch.rand(int(diverged.sum()), int((~diverged).sum()))
        mixing /= mixing.sum(-1, keepdim=True)  # each reset task's weights: >= 0, sum 1
        for body in bodies:
            if body.reset_threshold == threshold:
                table = body.compositions
                with torch.no_grad():
                    others = table[~diverged.to(table.device)]
                    table[diverged.to(table.device)] = mixing.to(table) @ others
        reset |= diverged
    return int(reset.sum())
