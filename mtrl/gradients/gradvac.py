"""GradVac (Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021, Alg. 1).

PCGrad's surgery aims at cosine 0 between conflicting gradients; GradVac aims at an EMA of the
cosines seen, phi_hat_ij (init 0, so its first step is PCGrad's). For each task i, g_i' starts at
g_i; for every other j in a fresh random order, with phi_ij = cos(g_i', g_j): if
phi_ij < phi_hat_ij, g_i' += ||g_i'|| (phi_hat_ij sqrt(1 - phi_ij^2) - phi_ij sqrt(1 - phi_hat_ij^2))
/ (||g_j|| sqrt(1 - phi_hat_ij^2)) g_j, which sets cos(g_i', g_j) to phi_hat_ij; then
phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij (phi_ij before the correction, as in torchjd).
As in ``pcgrad.py``, each g_i' = sum_k C_ik g_k and every product is (C G)_ij, so the surgery runs
on T x T coefficients, every task taking its next j at once (row i's corrections only read row
i and phi_hat_i., so this is the sequential algorithm exactly).

Scale: the result is (1/T) sum_i g_i' (the paper and torchjd's GradVac sum: ratio T), the mean
where no cosine is below its target. torchjd's default beta is 0.5; the paper's (and ours) 0.01.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import GradientMethod
from mtrl.gradients.gram import row_norms
from mtrl.gradients.pcgrad import random_orders

FLAT = 1e-8  # floor on sqrt(1 - phi_hat^2): a target cosine of +-1 needs an unbounded step


def gradvac_coefficients(
    gram_matrix: torch.Tensor, orders: torch.Tensor, targets: torch.Tensor, beta: float
) -> torch.Tensor:
    """C [T, T] with g_i' = sum_k C_ik g_k, given G, the orders [T, T - 1] and phi_hat [T, T],
    which is updated in place."""
    num_tasks = gram_matrix.shape[0]
    coefficients = torch.eye(num_tasks, dtype=gram_matrix.dtype, device=gram_matrix.device)
    norms = gram_matrix.diagonal().clamp_min(0.0).sqrt()  # ||g_j||
    rows = torch.arange(num_tasks, device=gram_matrix.device)
    for step in range(num_tasks - 1):
        others = orders[:, step].to(gram_matrix.device)  # [T]: task i's j at this step
        dots = (coefficients * gram_matrix[:, others].T).sum(1)  # g_i' . g_j
        own = row_norms(coefficients, gram_matrix)  # ||g_i'||
        lengths = own * norms[others]
        defined = lengths > 0  # a zero gradient has no cosine: neither corrected nor averaged in
        cosines = torch.where(defined, dots / lengths.clamp_min(torch.finfo(dots.dtype).tiny), 0.0)
        cosines = cosines.clamp(-1.0, 1.0)
        target = targets[rows, others]
        below = defined & (cosines < target)
        flat = (1.0 - target**2).clamp_min(0.0).sqrt().clamp_min(FLAT)
        gap = target * (1.0 - cosines**2).clamp_min(0.0).sqrt() - cosines * flat
        ratio = own / norms[others].clamp_min(torch.finfo(dots.dtype).tiny)
        coefficients[rows, others] += torch.where(below, ratio * gap / flat, 0.0)
        targets[rows, others] = torch.where(
            defined, (1.0 - beta) * target + beta * cosines, target
        )
    return coefficients


class GradVac(GradientMethod):
    """Alg. 1 of Wang et al. (2021); ``combine`` returns (1/T) sum_i g_i'."""

    def __init__(self, num_tasks: int, seed: int = 0, beta: float = 0.01) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"gradvac: beta must be in [0, 1], got {beta}")
        super().__init__(num_tasks, seed)
        self.beta = float(beta)
        self.targets = torch.zeros(num_tasks, num_tasks, dtype=torch.float64)  # phi_hat

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        orders = random_orders(self.num_tasks, self.generator)
        targets = self.targets.to(gram_matrix.device, gram_matrix.dtype)
        coefficients = gradvac_coefficients(gram_matrix, orders, targets, self.beta)
        self.targets = targets.to("cpu", torch.float64)
        return coefficients.sum(0) / self.num_tasks

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "targets": self.targets.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.targets = state["targets"].to(torch.float64).clone()
