"""GradVac (Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task Optimization in
Massively Multilingual Models", ICLR 2021, Alg. 1).

PCGrad's surgery aims at cosine 0 between conflicting gradients; GradVac aims at an EMA of the
cosines seen, phi_hat_ij (init 0, so its first step is PCGrad's), so related tasks are pulled back
to the alignment they usually have rather than merely to orthogonality. For each task i, g_i' starts at
g_i; for every other j in a fresh random order, with phi_ij = cos(g_i', g_j): if
phi_ij < phi_hat_ij, g_i' += ||g_i'|| (phi_hat_ij sqrt(1 - phi_ij^2) - phi_ij sqrt(1 - phi_hat_ij^2))
/ (||g_j|| sqrt(1 - phi_hat_ij^2)) g_j, which sets cos(g_i', g_j) to phi_hat_ij; then
phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij (phi_ij before the correction, as in torchjd).
As in ``pcgrad.py``, each g_i' = sum_k C_ik g_k and every product is (C G)_ij, so the surgery runs
on T x T coefficients, every task taking its next j at once (row i's corrections only read row
i and phi_hat_i., so this is the sequential algorithm exactly); C G is kept up to date row by row,
O(T^2) a step, in numpy (as small torch ops its T - 1 tiny steps cost more; docs/benchmarks.md).

Scale: the result is (1/T) sum_i g_i' (the paper and torchjd's GradVac sum: ratio T), the mean
where no cosine is below its target. torchjd's default beta is 0.5; the paper's (and ours) 0.01.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.pcgrad import random_orders

FLAT = 1e-8  # floor on sqrt(1 - phi_hat^2): a target cosine of +-1 needs an unbounded step


def gradvac_coefficients(
    gram_matrix: np.ndarray, orders: np.ndarray, targets: np.ndarray, beta: float
) -> np.ndarray:
    """C [T, T] with g_i' = sum_k C_ik g_k, given G [T, T], the orders [T, T - 1] and phi_hat
    [T, T], which is updated in place."""
    num_tasks = gram_matrix.shape[0]
    coefficients = np.eye(num_tasks)
    products = gram_matrix.copy()  # C G: products[i, j] = g_i' . g_j
    squared = np.maximum(np.diag(gram_matrix), 0.0)  # ||g_j||^2, then ||g_i'||^2 by row
    norms = np.sqrt(squared)
    rows = np.arange(num_tasks)
    for step in range(num_tasks - 1):
        others = orders[:, step]  # [T]: task i's j at this step
        dots = products[rows, others]  # g_i' . g_j
        own = np.sqrt(np.maximum(squared, 0.0))  # ||g_i'||
        lengths = own * norms[others]
        defined = lengths > 0  # a zero gradient has no cosine: neither corrected nor averaged in
        cosines = np.minimum(np.maximum(dots / np.where(defined, lengths, 1.0), -1.0), 1.0)
        cosines[~defined] = 0.0
        target = targets[rows, others]
        flat = np.maximum(np.sqrt(np.maximum(1.0 - target**2, 0.0)), FLAT)
        gap = target * np.sqrt(np.maximum(1.0 - cosines**2, 0.0)) - cosines * flat
        added = own / np.where(defined, norms[others], 1.0) * gap / flat
        added[~(defined & (cosines < target))] = 0.0
        coefficients[rows, others] += added
        products += added[:, None] * gram_matrix[others]  # g_i' += added_i g_j
        squared += added * (2.0 * dots + added * norms[others] ** 2)
        targets[rows, others] = np.where(defined, (1.0 - beta) * target + beta * cosines, target)
    return coefficients


class GradVac(GramWeighting):
    """Alg. 1 of Wang et al. (2021); ``combine`` returns (1/T) sum_i g_i'."""

    def __init__(self, num_tasks: int, seed: int = 0, beta: float = 0.01) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"gradvac: beta must be in [0, 1], got {beta}")
        super().__init__(num_tasks, seed)
        self.beta = float(beta)
        self.targets = torch.zeros(num_tasks, num_tasks, dtype=torch.float64)  # phi_hat

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        orders = random_orders(self.num_tasks, self.generator).numpy()
        targets = self.targets.numpy()  # updated in place
        gram_np = gram_matrix.detach().cpu().double().numpy()
        coefficients = gradvac_coefficients(gram_np, orders, targets, self.beta)
        return torch.as_tensor(coefficients.sum(0) / self.num_tasks, device=gram_matrix.device)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "targets": self.targets.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.targets = state["targets"].to(torch.float64).clone()
