"""IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, Sec. 3.2).

Find g = sum_i a_i g_i (sum a_i = 1) whose projections onto every task's unit gradient
u_i = g_i / ||g_i|| are equal: g . (u_1 - u_k) = 0 for k >= 2. With D = [g_1 - g_k]_k and
U = [u_1 - u_k]_k, a_{2..T} = g_1 U^T (D U^T)^-1 and a_1 = 1 - sum_{k>=2} a_k (their Eq. 10).
Every dot product is an entry of the Gram matrix divided by norms, so this is a (T-1)-dim linear
solve (least squares, for degenerate G).
"""

from __future__ import annotations

import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.gram import EPS


def imtl_g_weights(gram_matrix: torch.Tensor) -> torch.Tensor:
    """G [T, T] -> a [T] (sum 1)."""
    num_tasks = gram_matrix.shape[0]
    if num_tasks == 1:
        return torch.ones(1, dtype=gram_matrix.dtype, device=gram_matrix.device)
    norms = gram_matrix.diagonal().clamp_min(EPS).sqrt()  # [T]
    dot_unit = gram_matrix / norms.unsqueeze(0)  # [T, T]: g_a . u_b
    # g_1 . (u_1 - u_k) and (g_1 - g_a) . (u_1 - u_b), for a, b, k >= 2.
    rhs = dot_unit[0, 0] - dot_unit[0, 1:]  # [T-1]
    d_u = (
        dot_unit[0, 0]
        - dot_unit[0, 1:].unsqueeze(0)
        - dot_unit[1:, 0].unsqueeze(1)
        + dot_unit[1:, 1:]
    )  # [T-1, T-1]
    rest = torch.linalg.lstsq(d_u.T, rhs.unsqueeze(1)).solution.squeeze(1)  # a (D U^T) = g_1 U^T
    return torch.cat([1.0 - rest.sum(0, keepdim=True), rest])


class IMTLG(GramWeighting):
    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        return imtl_g_weights(gram_matrix)
