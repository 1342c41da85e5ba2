"""MGDA (Désidéri 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018): the min-norm point of the convex hull of the task gradients,
w* = argmin_{w in simplex} ||sum_i w_i g_i||^2, found by Frank-Wolfe on the Gram matrix (their
Alg. 2). The result sum_i w*_i g_i is a descent direction for every task (or zero at a Pareto-
stationary point); its weights sum to 1, as the mean's do.
"""

from __future__ import annotations

import numpy as np
import torch

from mtrl.gradients.base import GradientMethod


def min_norm_weights(
    gram_matrix: np.ndarray, iterations: int = 250, tol: float = 1e-7
) -> np.ndarray:
    """Frank-Wolfe for min_{w in simplex} w^T G w, with exact line search; G [T, T] -> w [T]."""
    num_tasks = gram_matrix.shape[0]
    weights = np.full(num_tasks, 1.0 / num_tasks)
    for _ in range(iterations):
        gradient = gram_matrix @ weights  # (1/2) d/dw of w^T G w
        vertex = int(np.argmin(gradient))  # the simplex corner that decreases it most
        # Exact step along w -> e_t: minimise ||(1 - s) g_w + s g_t||^2 over s in [0, 1].
        g_ww = weights @ gradient
        g_wt = gradient[vertex]
        g_tt = gram_matrix[vertex, vertex]
        denominator = g_ww - 2 * g_wt + g_tt
        if denominator <= 0:
            break
        step = float(np.clip((g_ww - g_wt) / denominator, 0.0, 1.0))
        if step < tol:
            break
        weights = (1 - step) * weights
        weights[vertex] += step
    return weights


class MGDA(GradientMethod):
    def __init__(self, num_tasks: int, seed: int = 0, iterations: int = 250) -> None:
        super().__init__(num_tasks, seed)
        self.iterations = iterations
        self.last_weights: torch.Tensor | None = None

    def weights(self, gram_matrix, task_losses, layer_gram=None) -> torch.Tensor:
        weights = min_norm_weights(gram_matrix.cpu().numpy(), self.iterations)
        weights_t = torch.as_tensor(weights, device=gram_matrix.device)
        self.last_weights = weights_t.float()
        return weights_t
