"""Gradient-conflict diagnostics of the PCGrad paper, from the Gram matrix of the task gradients.

cos phi_ij = g_i . g_j / (||g_i|| ||g_j||) (conflict where < 0) and the gradient-magnitude
similarity Phi_ij = 2 ||g_i|| ||g_j|| / (||g_i||^2 + ||g_j||^2), over the pairs i < j.
"""

from __future__ import annotations

import torch

from mtrl.gradients.gram import EPS


def conflict_diagnostics(gram_matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """G [T, T] -> scalars (tensors, no host sync); empty for a single task."""
    num_tasks = gram_matrix.shape[0]
    if num_tasks < 2:
        return {}
    squared = gram_matrix.diagonal().clamp_min(0.0)  # [T]
    norms = squared.sqrt()
    i, j = torch.triu_indices(num_tasks, num_tasks, offset=1, device=gram_matrix.device)
    cosine = gram_matrix[i, j] / (norms[i] * norms[j]).clamp_min(EPS)  # [pairs]
    magnitude = 2 * norms[i] * norms[j] / (squared[i] + squared[j]).clamp_min(EPS)
    return {
        "gradients/cosine_mean": cosine.mean().float(),
        "gradients/cosine_min": cosine.min().float(),
        "gradients/conflict_fraction": (cosine < 0).double().mean().float(),
        "gradients/magnitude_similarity": magnitude.mean().float(),
    }
