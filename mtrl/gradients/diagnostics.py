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


def conflict_diagnostics(gram_matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """G [T, T] -> scalars (tensors, no host sync); empty for a single task."""
    if gram_matrix.shape[0] < 2:
        return {}
    pairs = _pairs(gram_matrix)
    cosine = pairs["cosine"]
    return {
        "gradients/cosine_mean": cosine.mean().float(),
        "gradients/cosine_min": cosine.min().float(),
        "gradients/conflict_fraction": (cosine < 0).double().mean().float(),
        "gradients/magnitude_similarity": pairs["magnitude"].mean().float(),
    }


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
