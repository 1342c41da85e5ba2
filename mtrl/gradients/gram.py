"""Gram-matrix arithmetic shared by the methods that combine task gradients in coefficient space.

A combination ``sum_i w_i g_i`` of the rows of J [T, P] is fully described by w [T] and the Gram
matrix G = J J^T [T, T]: its norm is sqrt(w^T G w) and its dot product with g_j is (w^T G)_j. So the
methods below work on T x T numbers and touch the P-sized vectors twice: once for G, once for the
final ``w @ J``.
"""

from __future__ import annotations

import torch

EPS = 1e-20  # squared-norm floor: a zero task gradient neither divides by zero nor projects


def gram(task_grads: torch.Tensor) -> torch.Tensor:
    """J [T, P] -> G [T, T] in float64 (T x T is tiny; float64 keeps projections exact)."""
    return (task_grads @ task_grads.T).double()


def row_norms(coefficients: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
    """||sum_k C_ik g_k|| for every row i of C [T, T] -> [T]."""
    squared = ((coefficients @ gram_matrix) * coefficients).sum(1)
    return squared.clamp_min(0.0).sqrt()


def norm_of(weights: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
    """||sum_i w_i g_i|| for w [T] -> scalar."""
    return (weights @ gram_matrix @ weights).clamp_min(0.0).sqrt()


def apply_weights(weights: torch.Tensor, task_grads: torch.Tensor) -> torch.Tensor:
    """sum_i w_i g_i: w [T] (float64) and J [T, P] -> [P] in J's dtype."""
    return weights.to(task_grads.dtype) @ task_grads
