"""CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021).

Maximise the worst task's improvement min_i <g_i, d> within a ball around the mean gradient,
||d - g_0|| <= c ||g_0||. Its dual is a problem over the simplex (their Eq. 4):
w* = argmin_w g_w^T g_0 + sqrt(phi) ||g_w||, g_w = sum_i w_i g_i, phi = c^2 ||g_0||^2; then
d = g_0 + sqrt(phi) / ||g_w|| g_w, returned as d / (1 + c) as in the authors' code. Only the Gram
matrix is needed; the T-dim problem is solved with SLSQP, as the reference implementation does.
c = 0 is the mean; c in [0, 1) converges (the paper uses 0.4 for Meta-World MT10).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.gram import EPS


def cagrad_weights(gram_matrix: np.ndarray, c: float) -> np.ndarray:
    """The combination weights of d / (1 + c) over the task gradients: G [T, T] -> [T]."""
    num_tasks = gram_matrix.shape[0]
    mean = np.full(num_tasks, 1.0 / num_tasks)
    g0_norm = float(np.sqrt(max(mean @ gram_matrix @ mean, 0.0)))
    if c == 0 or g0_norm < np.sqrt(EPS):
        return mean
    sqrt_phi = c * g0_norm
    # w* is unchanged by scaling G (the objective scales with it). SLSQP's tolerances are absolute,
    # so it solves on G / (trace / T), whose entries are O(1) at every gradient scale: there the
    # weights depend on the task order by ~1e-7, on the raw G by ~1e-4.
    scale = float(np.trace(gram_matrix)) / num_tasks
    scaled = gram_matrix / scale
    scaled_mean = scaled @ mean  # [T]: g_i . g_0 / scale
    scaled_sqrt_phi = sqrt_phi / np.sqrt(scale)

    def objective(w: np.ndarray) -> float:
        return float(w @ scaled_mean + scaled_sqrt_phi * np.sqrt(max(w @ scaled @ w, 0.0) + EPS))

    result = minimize(
        objective,
        mean,
        bounds=[(0.0, 1.0)] * num_tasks,
        constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0},
        method="SLSQP",
    )
    w = np.clip(result.x, 0.0, None)
    gw_norm = float(np.sqrt(max(w @ gram_matrix @ w, 0.0)))
    return (mean + sqrt_phi / max(gw_norm, np.sqrt(EPS)) * w) / (1.0 + c)


class CAGrad(GramWeighting):
    def __init__(self, num_tasks: int, seed: int = 0, c: float = 0.4) -> None:
        if not 0.0 <= c < 1.0:
            raise ValueError(f"cagrad: c must be in [0, 1), got {c}")
        super().__init__(num_tasks, seed)
        self.c = c

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        weights = cagrad_weights(gram_matrix.cpu().numpy(), self.c)
        return torch.as_tensor(weights, device=gram_matrix.device)
