"""MoDo (Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective Learning:
Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023, Eq. 2.9a-b).

A Gram weighting with state: the task weights lambda [T] live on the simplex and take one
projected gradient step per update on the MGDA objective, regularised,
lambda <- Pi_simplex(lambda - gamma (G + rho I) lambda) (Eq. 2.9a), and the step is
sum_i lambda_i g_i (Eq. 2.9b). The paper builds G from two independent batches (J_1 J_2^T) so that
the step on lambda is unbiased; the engine has one batch per update, so G = J J^T here (as
LibMTL's single-batch use). The defaults gamma = 0.1, rho = 0.1 are torchjd's ``MoDoWeighting``'s.
The weights sum to 1 (the mean's scale, torchjd's too). gamma acts on G unnormalised, as in the
paper: its useful range scales with 1 / ||g||^2.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import GramWeighting


def project_onto_simplex(vector: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of [T] onto {w >= 0, sum w = 1} (sort and threshold, no loop):
    theta is (the sum of the k largest - 1) / k for the largest k whose k-th value exceeds it."""
    ordered = vector.sort(descending=True).values
    excess = ordered.cumsum(0) - 1.0
    counts = torch.arange(1, len(vector) + 1, dtype=vector.dtype, device=vector.device)
    support = torch.where(ordered * counts > excess, counts, 0).max().long()
    return (vector - excess[support - 1] / support).clamp_min(0.0)


def modo_step(
    weights: torch.Tensor, matrix: torch.Tensor, gamma: float, rho: float
) -> torch.Tensor:
    """One step of Eq. 2.9a: Pi_simplex(lambda - gamma (A lambda + rho lambda)), A [T, T]."""
    return project_onto_simplex(weights - gamma * (matrix @ weights + rho * weights))


class MoDo(GramWeighting):
    """MoDo's lambda (Chen et al. 2023, Eq. 2.9a), one projected step per update, from 1/T."""

    def __init__(self, num_tasks: int, seed: int = 0, gamma: float = 0.1, rho: float = 0.1) -> None:
        if gamma <= 0 or rho < 0:
            raise ValueError(f"modo: need gamma > 0 and rho >= 0, got gamma={gamma}, rho={rho}")
        super().__init__(num_tasks, seed)
        self.gamma, self.rho = gamma, rho
        self.lambd = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        self.lambd = modo_step(self.lambd, gram_matrix.detach().cpu(), self.gamma, self.rho)
        return self.lambd.to(gram_matrix.device)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lambda": self.lambd.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lambd = state["lambda"].clone()
