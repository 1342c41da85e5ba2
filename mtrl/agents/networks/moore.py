"""MOORE (Hendawy et al., ICLR 2024, "Multi-Task Reinforcement Learning with Mixture of
Orthogonal Experts"): k experts whose representations of a state are made orthonormal, so that
they span k different directions instead of collapsing onto one.

For each state s the k experts give k vectors h_1(s) .. h_k(s) of width d; the Gram-Schmidt
process turns them into an orthonormal basis U_s = [u_1 .. u_k] (u_1 = h_1 / |h_1|, each next one
h_i minus its projections on the u before it, normalised). Task c weights the basis with its own
vector w_c in R^k: v_c(s) = tanh(U_s w_c) (the tanh as in rainx0r/mtrl's ``nn/moore.py``), and
task c's own output layer reads v_c(s) (the paper's multi-head output on Meta-World). The experts
read the state (the task enters through w_c and the heads); w_c is task c's row of a [T, k] table,
the linear task encoder of the one-hot without a bias, so it and the heads are task-specific.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mtrl.agents.networks.layers import TaskLinear, mlp, positive, task_index


def gram_schmidt(vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[..., k, d] -> [..., k, d]: the k vectors of each row made orthonormal in order
    (modified Gram-Schmidt: each vector loses its projection on every basis vector before it),
    in fp32 whatever the input's dtype, since under bf16 the basis would be orthonormal only to
    ~3 digits."""
    basis: list[torch.Tensor] = []
    for vector in vectors.float().unbind(-2):
        for previous in basis:
            vector = vector - (vector * previous).sum(-1, keepdim=True) * previous
        basis.append(vector / vector.norm(dim=-1, keepdim=True).clamp_min(eps))
    return torch.stack(basis, -2)


class MOOREBody(nn.Module):
    """k expert MLPs on the state (hidden_sizes, the last layer linear: the representation),
    their outputs orthonormalised per state, each task's weighted sum of them through tanh, and a
    head per task."""

    task_specific = ("task_weights", "heads.")

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        experts: int = 4,
    ) -> None:
        super().__init__()
        positive("moore", experts=experts)
        width = hidden_sizes[-1]
        if experts > width:
            raise ValueError(
                f"moore: experts ({experts}) must be at most the representation width "
                f"({width}): k orthonormal vectors need k dimensions"
            )
        self.num_tasks = num_tasks
        state_dim = obs_dim - num_tasks
        self.experts = nn.ModuleList(
            mlp(state_dim, tuple(hidden_sizes[:-1]), width) for _ in range(experts)
        )
        # The task encoder: nn.Linear(T, k, bias=False) on the one-hot, held as its [T, k] table.
        self.task_weights = nn.Parameter(torch.empty(num_tasks, experts))
        bound = 1.0 / math.sqrt(num_tasks)  # nn.Linear's default for T inputs
        nn.init.uniform_(self.task_weights, -bound, bound)
        self.heads = TaskLinear(num_tasks, width, out_dim)

    def basis(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's orthonormal expert representations: x [G, B, obs] -> [G, B, k, d]."""
        state = x[..., : -self.num_tasks]
        return gram_schmidt(torch.stack([expert(state) for expert in self.experts], -2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task = task_index(x, self.num_tasks)
        if self.task_weights.dim() == 1:  # one task's row (the per-task pass): [k, 1]
            weights = self.task_weights[:, None]
        else:
            weights = self.task_weights[task][:, None, :, None]  # [G, 1, k, 1]
        features = torch.tanh((weights * self.basis(x)).sum(-2))  # [G, B, d]
        return self.heads(features, task)
