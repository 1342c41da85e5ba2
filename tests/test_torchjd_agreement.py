"""Our gradient methods against independent implementations.

1. Exact MGDA against an independent QP solve (scipy's SLSQP on the simplex from several starts)
   and against the KKT conditions directly; Frank-Wolfe stays selectable.
2. Every method that torchjd 0.18 (SimplexLab/TorchJD, a dev dependency) also has: the directions
   agree, and the scales differ only by the documented conventions below. Skipped without torchjd.

Scale conventions (ours: ``combine`` returns on the mean-gradient scale, ../DESIGN.md):
- mean: torchjd's Mean is the mean too -> ratio 1.
- mgda: both are sum_i w_i g_i with w in the simplex -> ratio 1.
- imtl_g: both normalise the weights to sum 1 -> ratio 1.
- pcgrad: torchjd sums the projected gradients (the paper's Alg. 1), ours averages -> ratio T.
- cagrad: torchjd returns d = g_0 + (sqrt(phi) / ||g_w||) g_w, ours d / (1 + c) -> ratio 1 + c.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtrl import gradients
from mtrl.gradients.base import StepContext
from mtrl.gradients.gram import gram
from mtrl.gradients.mgda import exact_min_norm_weights, min_norm_weights
from mtrl.gradients.pcgrad import random_orders


def conflicting_jacobian(rng: np.random.Generator, num_tasks: int, size: int) -> np.ndarray:
    """J [T, P]: a shared direction that some tasks oppose, noise, and norms over ~2 decades."""
    shared = rng.normal(size=size)
    signs = np.where(rng.random(num_tasks) < 0.3, -1.0, 1.0)
    signs[0] = 1.0
    if num_tasks > 1:
        signs[1] = -1.0  # at least one pair in conflict
    jacobian = 0.7 * signs[:, None] * shared + rng.normal(size=(num_tasks, size))
    norms = np.exp(rng.uniform(-2.3, 2.3, size=(num_tasks, 1)))
    jacobian = jacobian / np.linalg.norm(jacobian, axis=1, keepdims=True) * norms
    return jacobian


def slsqp_min_norm(gram_matrix: np.ndarray, rng: np.random.Generator, starts: int = 4) -> float:
    """min_{w in simplex} w^T G w by SLSQP (ftol 1e-15) from the uniform and random starts."""
    num_tasks = gram_matrix.shape[0]
    best = np.inf
    inits = [np.full(num_tasks, 1.0 / num_tasks)]
    inits += [rng.dirichlet(np.ones(num_tasks)) for _ in range(starts - 1)]
    for init in inits:
        result = minimize(
            lambda w: w @ gram_matrix @ w,
            init,
            jac=lambda w: 2.0 * gram_matrix @ w,
            bounds=[(0.0, 1.0)] * num_tasks,
            constraints={
                "type": "eq",
                "fun": lambda w: w.sum() - 1.0,
                "jac": lambda w: np.ones_like(w),
            },
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 2000},
        )
        w = np.clip(result.x, 0.0, None)
        w = w / w.sum()  # a feasible point, so its value bounds the minimum from above
        best = min(best, float(w @ gram_matrix @ w))
    return best


@pytest.mark.parametrize("num_tasks", [2, 3, 5, 8, 10, 20, 35, 50])
def test_exact_mgda_matches_an_independent_qp_and_its_kkt_conditions(num_tasks):
    rng = np.random.default_rng(num_tasks)
    for trial in range(6):
        # P below T too (rank-deficient G, origin possibly in the hull).
        size = int(rng.integers(max(2, num_tasks // 2), 3 * num_tasks + 3))
        jacobian = conflicting_jacobian(rng, num_tasks, size)
        gram_matrix = jacobian @ jacobian.T
        scale = gram_matrix.diagonal().max()
        w = exact_min_norm_weights(gram_matrix)
        assert w.min() >= 0.0 and w.sum() == pytest.approx(1.0, abs=1e-12)
        value = float(w @ gram_matrix @ w)
        reference = slsqp_min_norm(gram_matrix, rng)
        # 1e-8 relative, with an absolute floor at rounding level where the minimum is ~0.
        assert value <= reference * (1 + 1e-8) + 1e-13 * scale, (trial, value, reference)
        # KKT: (G w)_i = w^T G w on the support and >= it off the support (relative to max G_ii).
        products = gram_matrix @ w
        active = w > 1e-12
        assert np.abs(products[active] - value).max() <= 1e-9 * scale
        assert (products[~active] >= value - 1e-9 * scale).all()


def test_exact_mgda_beats_frank_wolfe_and_frank_wolfe_stays_selectable():
    rng = np.random.default_rng(0)
    task_grads = torch.as_tensor(conflicting_jacobian(rng, 5, 40))
    gram_matrix = gram(task_grads)
    exact = gradients.make("mgda", 5)
    frank_wolfe = gradients.make("mgda", 5, solver="frank_wolfe", iterations=250)
    assert exact.solver == "exact" and frank_wolfe.solver == "frank_wolfe"
    w_exact = exact.weights(gram_matrix, None, StepContext()).numpy()
    w_fw = frank_wolfe.weights(gram_matrix, None, StepContext()).numpy()
    g = gram_matrix.numpy()
    assert np.allclose(w_fw, min_norm_weights(g, 250))  # the old solver, unchanged
    assert w_exact @ g @ w_exact <= w_fw @ g @ w_fw + 1e-15
    assert gradients.make("mgda:solver=frank_wolfe", 5).solver == "frank_wolfe"
    with pytest.raises(ValueError, match="solver must be"):
        gradients.make("mgda", 5, solver="newton")


# --- torchjd ------------------------------------------------------------------------------------


def torchjd_aggregator(name: str, num_tasks: int):
    aggregation = pytest.importorskip("torchjd.aggregation")
    if name == "mean":
        return aggregation.Mean(), 1.0
    if name == "mgda":
        # torchjd's MGDA is Frank-Wolfe (default epsilon 1e-3, 100 iterations): run it long.
        return aggregation.MGDA(epsilon=1e-12, max_iters=20000), 1.0
    if name == "imtl_g":
        return aggregation.IMTLG(), 1.0
    if name == "pcgrad":
        return aggregation.PCGrad(), float(num_tasks)
    if name == "cagrad":
        pytest.importorskip("cvxpy", reason="torchjd's CAGrad needs torchjd[cagrad] (cvxpy)")
        return aggregation.CAGrad(c=0.4), 1.4
    raise KeyError(name)


# Our registry's methods that torchjd also has; the rest of GRADIENT_METHODS are loss weightings
# (GradNorm, DWA, ...) or PCGrad's ablations, which torchjd does not implement.
# name -> (min cosine, relative tolerance on the scale ratio): closed forms agree to rounding;
# MGDA (torchjd: Frank-Wolfe) and CAGrad (both: iterative solvers, SLSQP vs Clarabel) less tightly.
# Measured (T = 2..10, 4 draws each): cosine >= 1 - 1e-12 for mean, imtl_g, pcgrad; 0.99997 for
# mgda (0.43 degrees; torchjd's default epsilon=1e-3, 100 iterations gives 0.948); 0.9999993 for
# cagrad; ratio errors 2e-14 / 4e-4 / 8e-4.
SHARED = {
    "mean": (0.9999, 1e-9),
    "imtl_g": (0.9999, 1e-9),
    "pcgrad": (0.9999, 1e-9),
    "mgda": (0.99, 1e-2),
    "cagrad": (0.99, 1e-2),
}


def test_shared_methods_are_in_our_registry():
    assert set(SHARED) <= set(gradients.GRADIENT_METHODS)


def fixed_orders(orders: torch.Tensor):
    """A stand-in for torch.randperm whose i-th call returns task i's order [i, *orders[i]]
    (torchjd's PCGrad skips j == i, and calls randperm once per task, in task order)."""
    calls = iter(range(orders.shape[0]))

    def randperm(n, *args, **kwargs):
        i = next(calls)
        return torch.cat([torch.tensor([i]), orders[i]])

    return randperm


@pytest.mark.parametrize("name", sorted(SHARED))
@pytest.mark.parametrize("num_tasks", [2, 3, 5, 7, 10])
def test_ours_and_torchjd_agree_in_direction_and_documented_scale(name, num_tasks, monkeypatch):
    rng = np.random.default_rng(100 + num_tasks)
    for trial in range(4):
        task_grads = torch.as_tensor(conflicting_jacobian(rng, num_tasks, 3 * num_tasks + 7))
        aggregator, ratio = torchjd_aggregator(name, num_tasks)
        method = gradients.make(name, num_tasks, seed=trial)
        if name == "pcgrad":
            # torchjd draws each task's order with torch.randperm (the global generator), ours
            # from the method's generator: make torchjd take ours so the results can match exactly.
            orders = random_orders(num_tasks, torch.Generator().manual_seed(trial))
            monkeypatch.setattr(torch, "randperm", fixed_orders(orders))
        ours = method.combine(task_grads, torch.ones(num_tasks))
        theirs = aggregator(task_grads)
        monkeypatch.undo()
        cosine = float(torch.nn.functional.cosine_similarity(ours, theirs, dim=0))
        min_cosine, ratio_tol = SHARED[name]
        assert cosine >= min_cosine, (trial, cosine)
        assert float(theirs.norm() / ours.norm()) == pytest.approx(ratio, rel=ratio_tol), trial
