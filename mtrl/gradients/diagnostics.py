"""Gradient-conflict and curvature diagnostics of the PCGrad paper, from the Gram matrix.

cos phi_ij = g_i . g_j / (||g_i|| ||g_j||) (conflict where < 0) and the gradient-magnitude
similarity Phi_ij = 2 ||g_i|| ||g_j|| / (||g_i||^2 + ||g_j||^2), over the pairs i < j; with the
step's multi-task curvature l (``curvature.py``), Theorem 2's conditions on each pair.
"""

from __future__ import annotations

import torch

from mtrl.gradients.gram import EPS


def _pairs(gram_matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pair i < j: cosine, magnitude similarity, ||g_i - g_j||^2 and ||g_i + g_j||^2."""
    num_tasks = gram_matrix.shape[0]
    squared = gram_matrix.diagonal().clamp_min(0.0)  # [T]
    norms = squared.sqrt()
    i, j = torch.triu_indices(num_tasks, num_tasks, offset=1, device=gram_matrix.device)
    both, cross = squared[i] + squared[j], gram_matrix[i, j]
    return {
        "cosine": cross / (norms[i] * norms[j]).clamp_min(EPS),
        "magnitude": 2 * norms[i] * norms[j] / both.clamp_min(EPS),
        "difference": (both - 2 * cross).clamp_min(0.0),
        "sum": (both + 2 * cross).clamp_min(EPS),
    }


# Up to this many tasks the diagnostics also give every pair's cosine (T (T - 1) / 2 numbers a
# record: 45 at MT10, 1,225 at MT50), which is what picking a conflicting pair of tasks reads.
MAX_TASKS_FOR_PAIRS = 10


def conflict_diagnostics(gram_matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """G [T, T] -> tensors, no host sync; empty for a single task. Scalars under
    ``gradients/``; per task (``per_task/``, [T]) its gradient's norm and the share of the other
    tasks its gradient conflicts with; per pair (``per_pair/cosine``, [T, T], up to
    ``MAX_TASKS_FOR_PAIRS`` tasks) the cosines, which tell which tasks conflict, not only how often."""
    num_tasks = gram_matrix.shape[0]
    if num_tasks < 2:
        return {}
    pairs = _pairs(gram_matrix)
    cosine = pairs["cosine"]
    norms = gram_matrix.diagonal().clamp_min(0.0).sqrt()
    matrix = gram_matrix / (norms[:, None] * norms[None, :]).clamp_min(EPS)
    off_diagonal = ~torch.eye(num_tasks, dtype=torch.bool, device=gram_matrix.device)
    metrics = {
        "gradients/cosine_mean": cosine.mean().float(),
        "gradients/cosine_min": cosine.min().float(),
        "gradients/conflict_fraction": (cosine < 0).double().mean().float(),
        "gradients/magnitude_similarity": pairs["magnitude"].mean().float(),
        "per_task/grad_norm": norms.float(),
        "per_task/conflict_share": ((matrix < 0) & off_diagonal).double().sum(1).float()
        / (num_tasks - 1),
    }
    if num_tasks <= MAX_TASKS_FOR_PAIRS:
        metrics["per_pair/cosine"] = matrix.float()
    return metrics


def curvature_diagnostics(gram_matrix: torch.Tensor, curvature: torch.Tensor) -> dict:
    """The step's curvature l and Theorem 2's pair conditions, given G [T, T].

    A pair's curvature bound is xi_ij = (1 - cos^2 phi_ij) ||g_i - g_j||^2 / ||g_i + g_j||^2;
    condition (a) is cos phi_ij <= -Phi_ij (conflict beats magnitude similarity), (b) l >= xi_ij.
    Under (a) and (b) PCGrad's step improves on the mean's (for a small enough learning rate).
    """
    metrics = {"gradients/curvature": curvature.float()}
    if gram_matrix.shape[0] < 2:
        return metrics
    pairs = _pairs(gram_matrix)
    bound = (1 - pairs["cosine"].pow(2)).clamp_min(0.0) * pairs["difference"] / pairs["sum"]
    condition_a = pairs["cosine"] <= -pairs["magnitude"]
    condition_ab = condition_a & (curvature.to(bound) >= bound)
    return metrics | {
        "gradients/curvature_bound_mean": bound.mean().float(),
        "gradients/curvature_bound_max": bound.max().float(),
        "gradients/thm2_fraction_a": condition_a.double().mean().float(),
        "gradients/thm2_fraction_ab": condition_ab.double().mean().float(),
    }
