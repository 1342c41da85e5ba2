"""MGDA (Désidéri 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018): the min-norm point of the convex hull of the task gradients,
w* = argmin_{w in simplex} ||sum_i w_i g_i||^2. The result sum_i w*_i g_i is a descent direction for
every task (or zero at a Pareto-stationary point); its weights sum to 1, as the mean's do.

Two solvers, both on the Gram matrix G = J J^T only:

- ``solver="exact"`` (default): Wolfe's min-norm-point algorithm (Wolfe 1976, "Finding the nearest
  point in a polytope"), an active-set method on the KKT system. It keeps a "corral" S of affinely
  independent vertices, moves to the affine minimiser of S (a (|S|, |S|) linear solve), drops the
  vertices whose weight reaches zero on the way and adds the vertex with the smallest (G w)_i until
  every (G w)_i >= w^T G w: the KKT conditions of the QP, met to rounding error (1e-12 of max_i G_ii).
  It terminates in finitely many steps, a small share of the update even at T = 50.
- ``solver="frank_wolfe"``: the paper's Alg. 2 (Frank-Wolfe with exact line search), which stops
  early (``iterations``, step below 1e-7): at T = 5 its norm can be ~1% above the min-norm point.
"""

from __future__ import annotations

import numpy as np
import torch

from mtrl.gradients.base import GramWeighting

SOLVERS = ("exact", "frank_wolfe")


def min_norm_weights(
    gram_matrix: np.ndarray, iterations: int = 250, tol: float = 1e-7
) -> np.ndarray:
    """Frank-Wolfe for min_{w in simplex} w^T G w, with exact line search; G [T, T] -> w [T]."""
    num_tasks = gram_matrix.shape[0]
    weights = np.full(num_tasks, 1.0 / num_tasks)
    for _ in range(iterations):
        gradient = gram_matrix @ weights  # (1/2) d/dw of w^T G w
        vertex = int(np.argmin(gradient))  # the simplex corner that decreases it most
        # Exact step along w -> e_t: minimise ||(1 - s) g_w + s g_t||^2 over s in [0, 1].
        g_ww = weights @ gradient
        g_wt = gradient[vertex]
        g_tt = gram_matrix[vertex, vertex]
        denominator = g_ww - 2 * g_wt + g_tt
        if denominator <= 0:
            break
        step = float(np.clip((g_ww - g_wt) / denominator, 0.0, 1.0))
        if step < tol:
            break
        weights = (1 - step) * weights
        weights[vertex] += step
    return weights


def _affine_minimiser(gram_sub: np.ndarray) -> np.ndarray:
    """argmin_{1^T y = 1} y^T G_S y (no sign constraint) for an affinely independent corral.

    On the constraint y^T (G_S + 1 1^T) y = y^T G_S y + 1, and G_S + 1 1^T is positive definite
    exactly when the corral's points are affinely independent, so y is (G_S + 1 1^T)^-1 1 normalised.
    (G is scaled to max diagonal 1 beforehand, so the added 1 1^T is on G's scale.)
    """
    size = gram_sub.shape[0]
    system = gram_sub + 1.0
    ones = np.ones(size)
    try:
        solution = np.linalg.solve(system, ones)
        # One step of iterative refinement: the residual is computed in float64 on the same matrix.
        solution += np.linalg.solve(system, ones - system @ solution)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(system, ones, rcond=None)[0]
    return solution / solution.sum()


def exact_min_norm_weights(
    gram_matrix: np.ndarray, tol: float = 1e-12, max_iterations: int | None = None
) -> np.ndarray:
    """Wolfe's min-norm-point algorithm for min_{w in simplex} w^T G w; G [T, T] -> w [T].

    Stops when min_i (G w)_i >= w^T G w - tol * max_i G_ii, i.e. the Frank-Wolfe gap (an upper
    bound on w^T G w - min, times 1/2) is at rounding level. ``max_iterations`` (default 50 T + 50)
    only guards against cycling through rounding; it is not reached in practice.
    """
    gram_matrix = np.asarray(gram_matrix, dtype=np.float64)
    num_tasks = gram_matrix.shape[0]
    scale = float(np.max(np.diag(gram_matrix))) if num_tasks else 0.0
    if num_tasks == 0 or not np.isfinite(scale) or scale <= 0.0:
        return np.full(num_tasks, 1.0 / max(num_tasks, 1))  # all gradients zero: any w is optimal
    gram_n = 0.5 * (gram_matrix + gram_matrix.T) / scale  # symmetric, max diagonal 1
    max_iterations = 50 * num_tasks + 50 if max_iterations is None else max_iterations
    drop_tol = 1e-14  # weights at or below it leave the corral

    start = int(np.argmin(np.diag(gram_n)))  # the shortest gradient: the best single vertex
    corral = [start]
    weights = np.zeros(num_tasks)
    weights[start] = 1.0
    for _ in range(max_iterations):
        # Major cycle: the vertex that violates the KKT conditions most.
        gradient = gram_n @ weights
        value = float(weights @ gradient)
        vertex = int(np.argmin(gradient))
        if gradient[vertex] >= value - tol or vertex in corral:
            break
        corral.append(vertex)
        # Minor cycles: move to the affine minimiser of the corral, dropping vertices on the way.
        while True:
            index = np.array(corral)
            affine = _affine_minimiser(gram_n[np.ix_(index, index)])
            if np.all(affine > drop_tol):
                weights[:] = 0.0
                weights[index] = affine
                break
            current = weights[index]
            falling = affine < current
            # The longest step from w to y along which every weight stays >= 0.
            ratios = np.where(falling, current / np.where(falling, current - affine, 1.0), np.inf)
            step = float(min(1.0, ratios.min()))
            new = (1.0 - step) * current + step * affine
            keep = new > drop_tol
            if not keep.any():  # cannot happen in exact arithmetic; keep the best point
                keep[int(np.argmax(new))] = True
            weights[:] = 0.0
            weights[index[keep]] = new[keep]
            weights /= weights.sum()
            corral = [int(i) for i in index[keep]]
    return weights


class MGDA(GramWeighting):
    def __init__(
        self, num_tasks: int, seed: int = 0, solver: str = "exact", iterations: int = 250
    ) -> None:
        super().__init__(num_tasks, seed)
        if solver not in SOLVERS:
            raise ValueError(f"mgda: solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
        self.solver = solver
        self.iterations = iterations  # Frank-Wolfe's iteration cap (solver="frank_wolfe" only)

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        gram_np = gram_matrix.detach().cpu().double().numpy()
        if self.solver == "exact":
            weights = exact_min_norm_weights(gram_np)
        else:
            weights = min_norm_weights(gram_np, self.iterations)
        return torch.as_tensor(weights, device=gram_matrix.device)
