"""PCGrad (Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Alg. 1) and the
paper's two ablations, all from one Gram matrix.

Alg. 1: for each task i, g_i^PC starts at g_i; for every other task j in a fresh random order, if
g_i^PC . g_j < 0, g_i^PC -= (g_i^PC . g_j / ||g_j||^2) g_j (the projection onto the normal plane of
the *original* g_j). Each g_i^PC stays a combination sum_k C_ik g_k of the original gradients, and
every dot product it needs is (C G)_ij, so the surgery runs on the T x T coefficients C: T - 1 rounds
in which every task takes its next j at once (O(T^2) each), instead of T^2 operations on P-sized
vectors. The result is (1/T) sum_i g_i^PC (the paper sums; the mean keeps the scale of plain MT-SAC,
and Adam is nearly invariant to it).

The ablations of the paper's Table 3 separate what the surgery changes:
- ``pcgrad_dir``: each task keeps its own magnitude and takes PCGrad's direction,
  g_i^dir = g_i^PC / ||g_i^PC|| * ||g_i||;
- ``pcgrad_mag``: each task keeps its own direction and takes PCGrad's magnitude,
  g_i^mag = g_i / ||g_i|| * ||g_i^PC|| (a per-task re-weighting);
with ``scope="combined"`` the swap is made on the combined vectors g_PC and g_0 instead.
"""

from __future__ import annotations

import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.gram import EPS, norm_of, row_norms

SCOPES = ("task", "combined")


def random_orders(num_tasks: int, generator: torch.Generator) -> torch.Tensor:
    """[T, T - 1]: row i is a uniformly random order of the tasks other than i."""
    keys = torch.rand(num_tasks, num_tasks, generator=generator, dtype=torch.float64)
    keys.fill_diagonal_(2.0)  # sorts last: every row's own task is dropped
    return keys.argsort(dim=1)[:, :-1]


def pcgrad_coefficients(gram_matrix: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """C [T, T] with g_i^PC = sum_k C_ik g_k, given G [T, T] and the orders [T, T - 1]."""
    num_tasks = gram_matrix.shape[0]
    coefficients = torch.eye(num_tasks, dtype=gram_matrix.dtype, device=gram_matrix.device)
    squared_norms = gram_matrix.diagonal().clamp_min(EPS)  # [T]
    rows = torch.arange(num_tasks, device=gram_matrix.device)
    for step in range(num_tasks - 1):
        others = orders[:, step].to(gram_matrix.device)  # [T]: task i's j at this step
        # g_i^PC . g_j = sum_k C_ik G_kj, for every i with its own j.
        dots = (coefficients * gram_matrix[:, others].T).sum(1)  # [T]
        conflict = dots < 0
        coefficients[rows, others] -= torch.where(conflict, dots / squared_norms[others], 0.0)
    return coefficients


class PCGrad(GramWeighting):
    """Alg. 1 of Yu et al. (2020); ``combine`` returns (1/T) sum_i g_i^PC."""

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        coefficients = pcgrad_coefficients(
            gram_matrix, random_orders(self.num_tasks, self.generator)
        )
        return self.weights_from(coefficients, gram_matrix)

    def weights_from(self, coefficients: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
        return coefficients.sum(0) / self.num_tasks


class _PCGradAblation(PCGrad):
    def __init__(self, num_tasks: int, seed: int = 0, scope: str = "task") -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        super().__init__(num_tasks, seed)
        self.scope = scope


class PCGradDirection(_PCGradAblation):
    """PCGrad's direction with the original magnitude (per task, or of the combined vector)."""

    def weights_from(self, coefficients: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
        if self.scope == "task":
            own = gram_matrix.diagonal().clamp_min(0.0).sqrt()  # ||g_i||
            projected = row_norms(coefficients, gram_matrix).clamp_min(EPS)  # ||g_i^PC||
            return (coefficients * (own / projected).unsqueeze(1)).sum(0) / self.num_tasks
        surgery = coefficients.sum(0) / self.num_tasks
        mean = torch.full_like(surgery, 1.0 / self.num_tasks)
        scale = norm_of(mean, gram_matrix) / norm_of(surgery, gram_matrix).clamp_min(EPS)
        return surgery * scale


class PCGradMagnitude(_PCGradAblation):
    """The original direction with PCGrad's magnitude (per task, or of the combined vector)."""

    def weights_from(self, coefficients: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
        if self.scope == "task":
            own = gram_matrix.diagonal().clamp_min(0.0).sqrt().clamp_min(EPS)
            projected = row_norms(coefficients, gram_matrix)
            return projected / own / self.num_tasks
        surgery = coefficients.sum(0) / self.num_tasks
        mean = torch.full_like(surgery, 1.0 / self.num_tasks)
        scale = norm_of(surgery, gram_matrix) / norm_of(mean, gram_matrix).clamp_min(EPS)
        return mean * scale
