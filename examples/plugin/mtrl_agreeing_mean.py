"""A gradient method of one's own: the mean over the tasks whose gradient agrees with the mean.

A method sees the T x T Gram matrix G of the per-task gradients (G_ij = g_i . g_j, from mtrl's
one batched per-task pass) and returns weights w; the step is sum_i w_i g_i. This one drops the
tasks whose gradient points against the mean gradient (g_i . g_mean < 0) and averages the rest: a
toy cousin of PCGrad that needs nothing but G.
"""

from __future__ import annotations

import torch

from mtrl.gradients import GramWeighting


class AgreeingMean(GramWeighting):
    """The mean over the tasks whose gradient has a non-negative dot product with the mean."""

    def weights(self, gram_matrix, task_losses, context):
        agreement = gram_matrix.sum(dim=1)  # [T]: T * (g_i . g_mean)
        keep = (agreement >= 0).to(gram_matrix.dtype)
        if keep.sum() == 0:  # sum_i g_i . g_mean = T |g_mean|^2 >= 0: cannot happen, but be safe
            keep = torch.ones_like(keep)
        return keep / keep.sum()
