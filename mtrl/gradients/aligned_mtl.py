"""Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task Learning",
CVPR 2023, Alg. 1).

Conflict and dominance both show in the condition number of the task gradients; Aligned-MTL
replaces them by the closest set with condition number one and steps along their preference-weighted
sum. With the eigendecomposition G = U L U^T (eigenvalues below max(L) * T * eps dropped, as in
torchjd and numpy's matrix_rank), sigma = sqrt(L) and sigma_min the smallest kept:
w = sigma_min U Sigma^-1 U^T omega. The aligned gradients B J, B = sigma_min U Sigma^-1 U^T, are
orthogonal with norm sigma_min each (B G B = sigma_min^2 U U^T).

Scale: omega = (1/T) 1 by default, or ``preferences`` normalised to sum 1, so the step is the
aligned gradients' weighted mean: ||d|| = sigma_min ||omega|| where J has full row rank. This is
torchjd's AlignedMTL (scale_mode="min", mean preference): ratio 1. (The authors' code scales by
the mean eigenvalue instead, torchjd's scale_mode="rmse".)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mtrl.gradients.base import GramWeighting


def aligned_transform(gram_matrix: torch.Tensor) -> torch.Tensor:
    """B = sigma_min U Sigma^-1 U^T [T, T] on the kept eigenvectors; zero when G is."""
    eigenvalues, vectors = torch.linalg.eigh(gram_matrix)
    tolerance = eigenvalues.max() * gram_matrix.shape[0] * torch.finfo(gram_matrix.dtype).eps
    kept = eigenvalues > tolerance
    if not kept.any():
        return torch.zeros_like(gram_matrix)
    sigma = eigenvalues[kept].sqrt()
    vectors = vectors[:, kept]
    return sigma.min() * (vectors / sigma) @ vectors.T


def _parse_preferences(preferences: Sequence[float] | str | None, num_tasks: int):
    """omega [T], sum 1: uniform, or the given non-negative preferences normalised."""
    if preferences is None:
        return torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
    try:
        if isinstance(preferences, str):  # "1;2;1" (a spec's values cannot hold commas)
            preferences = preferences.replace(";", " ").split()
        values = torch.tensor([float(p) for p in preferences], dtype=torch.float64)
    except (TypeError, ValueError):
        values = torch.full((0,), float("nan"), dtype=torch.float64)
    if values.shape != (num_tasks,) or not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError(
            f"aligned_mtl: preferences must be {num_tasks} non-negative numbers, got {preferences!r}"
        )
    if not values.sum() > 0:
        raise ValueError("aligned_mtl: preferences must not all be zero")
    return values / values.sum()


class AlignedMTL(GramWeighting):
    def __init__(
        self, num_tasks: int, seed: int = 0, preferences: Sequence[float] | str | None = None
    ) -> None:
        super().__init__(num_tasks, seed)
        self.preferences = _parse_preferences(preferences, num_tasks)  # omega, sum 1

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        transform = aligned_transform(gram_matrix.double())
        return transform @ self.preferences.to(transform.device)
