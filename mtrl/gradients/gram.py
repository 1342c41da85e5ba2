"""Gram-matrix arithmetic shared by the methods that combine task gradients in coefficient space.

A combination ``sum_i w_i g_i`` of the rows of J [T, P] is fully described by w [T] and the Gram
matrix G = J J^T [T, T]: its norm is sqrt(w^T G w) and its dot product with g_j is (w^T G)_j. So the
methods below work on T x T numbers and touch the P-sized vectors twice: once for G, once for the
final ``w @ J``.
"""

from __future__ import annotations

import torch

EPS = 1e-20  # squared-norm floor: a zero task gradient neither divides by zero nor projects


GRAM_CHUNK = 4096  # columns per block of the blocked Gram product


def gram(task_grads: torch.Tensor) -> torch.Tensor:
    """J [T, P] -> G [T, T] in float64 (T x T is tiny; float64 keeps projections exact).

    A single [T, P] @ [P, T] product with P in the 10^5 is a shape BLAS handles badly; the same
    sum as a batch of [T, 4096] blocks is several times faster (docs/benchmarks.md).
    """
    num_tasks, size = task_grads.shape
    blocks = size // GRAM_CHUNK
    if blocks < 2:
        return (task_grads @ task_grads.T).double()
    split = blocks * GRAM_CHUNK
    head = task_grads[:, :split].reshape(num_tasks, blocks, GRAM_CHUNK).transpose(0, 1)
    result = torch.bmm(head, head.transpose(1, 2)).sum(0)  # [T, T]
    tail = task_grads[:, split:]
    return (result + tail @ tail.T).double()


def row_norms(coefficients: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
    """||sum_k C_ik g_k|| for every row i of C [T, T] -> [T]."""
    squared = ((coefficients @ gram_matrix) * coefficients).sum(1)
    return squared.clamp_min(0.0).sqrt()


def norm_of(weights: torch.Tensor, gram_matrix: torch.Tensor) -> torch.Tensor:
    """||sum_i w_i g_i|| for w [T] -> scalar."""
    return (weights @ gram_matrix @ weights).clamp_min(0.0).sqrt()


def assemble_gram(blocks: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """G [T, T] of the shared parameters, summed block by block (each block [T, P_n] one
    parameter's task gradients: the [T, P] matrix is never built), and each block's own Gram
    matrix (``StepContext.grams``)."""
    grams = [gram(block) for block in blocks]
    return torch.stack(grams).sum(0), grams
