"""ConFIG (Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks", ICLR 2025, Eq. 2).

A direction with the same positive projection on every unit task gradient u_i = g_i / ||g_i||, so
that no task is favoured by its gradient's norm, taken with the length the tasks agree on. With
D = diag(||g_i||) and the cosine matrix C = D^-1 G D^-1, c = D^-1 C^+ 1 gives v = J^T c, the
least-norm v with u_i . v = 1 for every i (C^+ on the eigenvalues above max * T * eps). The step is
v / ||v|| times the mean of the projections g_i . v / ||v||: w = c (1^T G c) / (T c^T G c).

Scale: the paper (and torchjd's ConFIG) takes the sum of the projections, ours their mean, which
is the gradient itself for identical tasks: torchjd's is ours times T. Its direction is IMTL-G's
wherever the unit gradients are linearly independent; only the length differs.
"""

from __future__ import annotations

import torch

from mtrl.gradients.base import GramWeighting


def conflict_free_weights(gram_matrix: torch.Tensor) -> torch.Tensor:
    """G [T, T] -> w [T]; the mean's weights where every gradient is zero."""
    num_tasks = gram_matrix.shape[0]
    norms = gram_matrix.diagonal().clamp_min(0.0).sqrt()
    inverse_norms = torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))  # 0: no u_i
    cosines = gram_matrix * inverse_norms.unsqueeze(0) * inverse_norms.unsqueeze(1)
    eigenvalues, vectors = torch.linalg.eigh(cosines)
    tolerance = eigenvalues.max() * num_tasks * torch.finfo(gram_matrix.dtype).eps
    kept = eigenvalues > tolerance
    vectors = vectors[:, kept]
    coefficients = inverse_norms * (
        vectors @ ((vectors.T @ torch.ones_like(norms)) / eigenvalues[kept])
    )
    products = gram_matrix @ coefficients  # g_i . v
    squared = coefficients @ products  # ||v||^2
    if not squared > 0:
        return torch.full_like(norms, 1.0 / num_tasks)
    return coefficients * (products.sum() / (num_tasks * squared))


class ConFIG(GramWeighting):
    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        return conflict_free_weights(gram_matrix.double())
