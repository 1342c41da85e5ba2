"""UPGrad and DualProj (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization",
arXiv 2406.16232, 2024).

Both project onto the dual cone {x : J x >= 0} of the task gradients, the directions that help
every task. By their Prop. 1 the projection of J^T u is J^T v with v = argmin_{v >= u} v^T G v, a
quadratic program in T variables with lower bounds only:
- ``upgrad``: project every g_i (u = e_i) and average, w = (1/T) sum_i argmin_{v >= e_i} v^T G v;
- ``dualproj``: project the mean (u = (1/T) 1), w = argmin_{v >= (1/T) 1} v^T G v (GEM's
  projection, Lopez-Paz & Ranzato 2017, Eq. 11).
Without conflict (G u >= 0) nothing moves and both are the mean; every weight is >= 1/T.

The QPs are solved exactly, all T of UPGrad's at once, by block principal pivoting (Judice & Pires
1994; Kim & Park 2011) on their linear complementarity form: with x = v - u >= 0, find the free set
F with x_F = -(G_FF)^-1 (G u)_F > 0 and (G v)_j >= 0 off F, swapping every violating index per
iteration and falling back to one swap (Murty's rule, finite) if that stops reducing the count.
Each iteration is one batched solve of the free blocks; it takes 2-5 of them here. It runs on the
cosine matrix (per-task rescaling keeps the problem's form) with a 1e-12 ridge, which keeps every
subsystem nonsingular where G is rank deficient (then the weights, though not the step, are not
unique).

Scale: the paper's (UPGrad averages the projections) and torchjd's UPGrad and DualProj (mean
preference) are these same weights: ratio 1.
"""

from __future__ import annotations

import numpy as np
import torch

from mtrl.gradients.base import GramWeighting

RIDGE = 1e-12  # on the cosine matrix (unit diagonal)
DEAD = 1e-12  # a gradient below this fraction of the largest norm is taken as zero
CHUNK = 16  # problems per batched solve
TOLERANCE = 1e-13  # sign tolerance of the complementarity conditions, on the cosine scale


def dual_cone_weights(gram_matrix: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """V [K, T] with V_k = argmin_{v >= lower_k} v^T G v, for G [T, T] and lower [K, T] >= 0."""
    gram_matrix = np.asarray(gram_matrix, dtype=np.float64)
    lower = np.atleast_2d(np.asarray(lower, dtype=np.float64))
    count, num_tasks = lower.shape
    norms = np.sqrt(np.clip(np.diag(gram_matrix), 0.0, None))
    scale = float(norms.max()) if num_tasks else 0.0
    if not np.isfinite(scale) or scale <= 0.0:
        return lower.copy()  # every gradient is zero: the bounds themselves are optimal
    # y = D v with D = diag(||g_i|| / scale) keeps the form (y^T C y, y >= D u) on the cosines C.
    # A zero gradient's row becomes e_i: its y_i stays at its bound, as any value would do.
    live = norms > DEAD * scale
    diagonal = np.where(live, norms / scale, 1.0)
    matrix = gram_matrix / scale**2 / np.outer(diagonal, diagonal)
    matrix = 0.5 * (matrix + matrix.T)
    matrix[~live, :] = 0.0
    matrix[:, ~live] = 0.0
    matrix[~live, ~live] = 1.0
    matrix += RIDGE * np.eye(num_tasks)

    bound = lower * diagonal  # [K, T]
    offset = bound @ matrix  # q = C (D u): the LCP is w = C x + q >= 0, x >= 0, x . w = 0
    free = np.zeros((count, num_tasks), dtype=bool)  # F, per problem; empty: x = 0 at first
    best = np.full(count, num_tasks + 1)  # the fewest violations so far, per problem
    retries = np.full(count, 3)  # full exchanges allowed without improving it
    x = np.zeros((count, num_tasks))
    pending = np.arange(count)
    for _ in range(10 * num_tasks + 10):
        f = free[pending]
        x_p = _solve_free(matrix, -offset[pending], f)
        slack = np.where(f, 0.0, x_p @ matrix + offset[pending])
        x[pending] = x_p
        violated = (f & (x_p < -TOLERANCE)) | (~f & (slack < -TOLERANCE))
        number = violated.sum(1)
        improving = number < best[pending]
        best[pending] = np.where(improving, number, best[pending])
        retries[pending] = np.where(improving, 3, retries[pending] - 1)
        # Murty's rule where full exchanges stopped helping: swap only the last violating index.
        single = ~improving & (retries[pending] < 0)
        last = num_tasks - 1 - np.argmax(violated[:, ::-1], axis=1)
        swap = np.where(single[:, None], np.arange(num_tasks) == last[:, None], violated)
        free[pending] = f ^ swap
        pending = pending[number > 0]
        if not len(pending):
            break
    return lower + np.clip(x, 0.0, None) / diagonal  # v = D^-1 (D u + x), without its rounding


def _solve_free(matrix: np.ndarray, rhs: np.ndarray, free: np.ndarray) -> np.ndarray:
    """x [K, T] with C_FF x_F = rhs_F and x = 0 off F, F = free[k] per row. Each problem's free
    block is gathered to the front of an [n, m, m] batch (padded with identity), the problems
    sorted by |F| and batched CHUNK at a time so that m, the largest |F| of a chunk, stays close to
    each one's own: far less work than [K, T, T] solves where the free sets are small."""
    count, num_tasks = free.shape
    sizes = free.sum(1)
    x = np.zeros((count, num_tasks))
    order = np.argsort(sizes, kind="stable")
    for chunk in np.array_split(order, -(-count // CHUNK)):
        width = int(sizes[chunk[-1]])
        if width == 0:
            continue
        index = np.argsort(~free[chunk], axis=1, kind="stable")[:, :width]  # free ones first
        inside = np.arange(width) < sizes[chunk, None]  # [n, m]
        block = matrix[index[:, :, None], index[:, None, :]]
        block = np.where(inside[:, :, None] & inside[:, None, :], block, np.eye(width))
        right = np.where(inside, np.take_along_axis(rhs[chunk], index, 1), 0.0)
        values = np.linalg.solve(block, right[..., None])[..., 0]
        rows = np.zeros((len(chunk), num_tasks))
        np.put_along_axis(rows, index, np.where(inside, values, 0.0), axis=1)
        x[chunk] = rows
    return x


def _as_weights(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float64, device=like.device)


class UPGrad(GramWeighting):
    """w = (1/T) sum_i argmin_{v >= e_i} v^T G v: the mean of the projected task gradients."""

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        gram_np = gram_matrix.detach().cpu().double().numpy()
        projected = dual_cone_weights(gram_np, np.eye(self.num_tasks))
        return _as_weights(projected.mean(0), gram_matrix)


class DualProj(GramWeighting):
    """w = argmin_{v >= (1/T) 1} v^T G v: the mean gradient projected onto the dual cone."""

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        gram_np = gram_matrix.detach().cpu().double().numpy()
        mean = np.full((1, self.num_tasks), 1.0 / self.num_tasks)
        return _as_weights(dual_cone_weights(gram_np, mean)[0], gram_matrix)
