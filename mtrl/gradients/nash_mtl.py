"""Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022, Alg. 1).

The tasks bargain over a step d in a ball, task i's utility being g_i . d; the Nash bargaining
solution is d = sum_i a_i g_i with a > 0 solving (G a)_i = 1 / a_i for every i. The
paper (and its code, cvxpy + ECOS) approaches it by a sequence of up to 20 convex approximations
(CCP). Instead: (G a)_i = 1 / a_i is exactly the stationarity condition of the strictly convex
f(a) = 1/2 a^T G a - sum_i log a_i, so damped Newton on f (with a line search keeping a > 0)
solves it to rounding error ((G a)_i a_i = 1 to 1e-14) in 5-10 steps of one T x T solve each. The condition is invariant to
per-task rescaling (a_i = b_i / ||g_i|| leaves it in b on the cosine matrix), so Newton runs on
the cosines: gradient norms over many decades do not slow it. The same solver, with 1 / a_i
replaced by a_i^(-1/alpha), gives FairGrad (``fairgrad.py``).

Scale: the paper's d is not normalised; its norm is sqrt(a^T G a) = sqrt(T) whatever the gradients'
scale. Ours returns a / sum_i a_i (a convex combination, the mean where the tasks agree exactly),
so torchjd's NashMTL (max_norm=0) is ours times sum_i a_i. ``update_every=k`` has the engine solve
on one update in k and reuse the weights in between (the paper's Nash-MTL-50/100, an engine schedule:
``GramWeighting``); ``max_norm > 0`` rescales the step to that norm when larger (the authors'
optional gradient clip, default off here; it needs G on every update, so only with k = 1).

Degenerate cases: a task whose gradient is zero gets weight 0 (its utility is 0 for every d); where
no d helps every task (a non-negative combination of the gradients vanishes: exact opposites) f is
unbounded below, and a ridge of 1e-12 on the cosine matrix makes the solution finite.
"""

from __future__ import annotations

import numpy as np
import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.gram import norm_of

RIDGE = 1e-12  # on the cosine matrix (unit diagonal): finite solutions where none exists
# Newton's decrement below which full steps converge quadratically (no line search: f's changes
# are then below its rounding), and below which the solution is at rounding level.
QUADRATIC, CONVERGED = 1e-6, 1e-24
DEAD = 1e-12  # a gradient below this fraction of the largest norm is taken as zero


def _newton(
    cosines: np.ndarray,
    coefficients: np.ndarray,
    power: float,
    ridge: float,
    b: np.ndarray,
    steps: int,
) -> np.ndarray:
    """b > 0 with ((C + ridge I) b)_i = c_i b_i^(-power), from b: damped Newton on the convex
    f(b) = 1/2 b^T (C + ridge I) b - sum_i c_i h(b_i), h' = b^(-power) (h = log for power 1)."""
    matrix = cosines + ridge * np.eye(len(b))
    if power == 1.0:

        def potential(b):  # sum_i c_i h(b_i)
            return coefficients @ np.log(b)
    else:

        def potential(b):
            return coefficients @ b ** (1.0 - power) / (1.0 - power)

    def objective(b):
        return 0.5 * b @ matrix @ b - potential(b)

    value = objective(b)
    for _ in range(steps):
        gradient = matrix @ b - coefficients * b**-power
        hessian = matrix + np.diag(power * coefficients * b ** (-power - 1.0))
        try:
            step = -np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:  # only where b has run off along a vanishing direction
            break
        decrement = -(gradient @ step)  # the squared Newton decrement, ~ 2 (f - min f)
        if not decrement > 0.0:
            break
        t = 1.0
        if decrement > QUADRATIC:  # far from the solution: a positive step that decreases f
            falling = step < 0
            if falling.any():
                t = min(1.0, 0.99 * float(np.min(-b[falling] / step[falling])))
            while objective(b + t * step) > value - 0.25 * t * decrement:
                t *= 0.5
                if t < 1e-12:  # no decrease left above f's rounding
                    return b
        elif (b + step <= 0.0).any():
            break
        b = b + t * step
        value = objective(b)
        if decrement < CONVERGED:  # the step just taken was at rounding level
            break
    return b


def fair_allocation(gram_matrix: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """a > 0 [T] with (G a)_i = a_i^(-1/alpha) (alpha = 1: Nash-MTL's 1 / a_i), on G's own scale;
    G [T, T]. Tasks with a zero gradient get a_i = 0."""
    gram_matrix = np.asarray(gram_matrix, dtype=np.float64)
    num_tasks = gram_matrix.shape[0]
    norms = np.sqrt(np.clip(np.diag(gram_matrix), 0.0, None))
    scale = float(norms.max()) if num_tasks else 0.0
    allocation = np.zeros(num_tasks)
    if not np.isfinite(scale) or scale <= 0.0:
        return allocation
    live = norms > DEAD * scale
    relative = norms[live] / scale
    gram_live = gram_matrix[np.ix_(live, live)]
    cosines = 0.5 * (gram_live + gram_live.T) / np.outer(relative, relative) / scale**2
    # With a_i = b_i / ||g_i||: (C b)_i = ||g_i||^(1/alpha - 1) b_i^(-1/alpha); the common factor
    # scale^(1/alpha - 1) of the right side only rescales b, by scale^((1/alpha - 1) / (1/alpha + 1)).
    power = 1.0 / alpha
    coefficients = relative ** (power - 1.0)
    # Start at the best multiple of 1, s (1^T C 1) = (sum c) s^(-power); solve with the ridge (a
    # bounded problem even where rounding leaves C slightly indefinite), then polish without it:
    # a few steps that remove its 1e-12 bias where the problem is well posed.
    total = max(float(cosines.sum()), RIDGE * len(relative))
    start = np.full(len(relative), (coefficients.sum() / total) ** (1.0 / (1.0 + power)))
    b = _newton(cosines, coefficients, power, RIDGE, start, 200)
    b = _newton(cosines, coefficients, power, 0.0, b, 8)
    allocation[live] = b / norms[live] * scale ** ((power - 1.0) / (power + 1.0))
    return allocation


def fair_weights(gram_matrix: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``fair_allocation`` normalised to sum 1 (uniform when every gradient is zero)."""
    allocation = fair_allocation(gram_matrix.detach().cpu().double().numpy(), alpha)
    total = allocation.sum()
    if not total > 0.0:
        allocation, total = np.ones_like(allocation), float(len(allocation))
    return torch.as_tensor(allocation / total, device=gram_matrix.device)


class NashMTL(GramWeighting):
    def __init__(
        self, num_tasks: int, seed: int = 0, update_every: int = 1, max_norm: float = 0.0
    ) -> None:
        if not (isinstance(update_every, int) and update_every >= 1):
            raise ValueError(f"nash_mtl: update_every must be an integer >= 1, got {update_every}")
        if not max_norm >= 0.0:
            raise ValueError(f"nash_mtl: max_norm must be >= 0 (0 is off), got {max_norm}")
        if max_norm > 0.0 and update_every > 1:
            raise ValueError(
                "nash_mtl: max_norm measures every step on the task gradients, which the updates"
                " between solves do not compute; use it with update_every=1"
            )
        super().__init__(num_tasks, seed)
        # The engine's schedule (``GramWeighting.update_every``): it solves on one update in k and
        # steps on the gradient of sum_i a_i L_i in between (what makes Nash-MTL-50 cheap).
        self.update_every, self.max_norm = update_every, max_norm

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        weights = fair_weights(gram_matrix, 1.0)
        if self.max_norm > 0.0:
            norm = float(norm_of(weights, gram_matrix))
            if norm > self.max_norm:
                weights = weights * (self.max_norm / norm)
        return weights
