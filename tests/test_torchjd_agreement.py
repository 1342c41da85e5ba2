"""Our gradient methods against independent implementations.

1. Exact MGDA against an independent QP solve (scipy's SLSQP on the simplex from several starts)
   and against the KKT conditions directly; Frank-Wolfe stays selectable.
2. Every method that torchjd 0.18 (SimplexLab/TorchJD, a dev dependency) also has: the directions
   agree, and the scales differ only by the documented conventions below. Skipped without torchjd.

Scale conventions (ours: ``combine`` returns on the mean-gradient scale, docs/gradient-methods.md):
- mean: torchjd's Mean is the mean too -> ratio 1.
- mgda: both are sum_i w_i g_i with w in the simplex -> ratio 1.
- imtl_g: both normalise the weights to sum 1 -> ratio 1.
- pcgrad: torchjd sums the projected gradients (the paper's Alg. 1), ours averages -> ratio T.
- cagrad: torchjd returns d = g_0 + (sqrt(phi) / ||g_w||) g_w, ours d / (1 + c) -> ratio 1 + c.
- nash_mtl, fairgrad: torchjd returns sum_i a_i g_i with the solution a of the system, ours
  a / sum_i a_i -> ratio sum_i a_i (of our own solution, on G's scale).
- aligned_mtl, upgrad, dualproj: the same weights (mean preference) -> ratio 1.
- conflict_free, gradvac: torchjd sums (the projections; the surgered gradients), ours averages
  -> ratio T.
- rlw: both step along sum_i softmax(eps)_i g_i -> ratio 1 (with the same draw).
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
from mtrl.gradients.nash_mtl import fair_allocation
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
    if name == "nash_mtl":
        for module in ("cvxpy", "ecos"):
            pytest.importorskip(module, reason="torchjd's NashMTL needs torchjd[nash_mtl]")
        # max_norm=0: no clipping (torchjd's default clips the step to norm 1).
        return aggregation.NashMTL(n_tasks=num_tasks, max_norm=0.0), _allocation_sum(1.0)
    if name == "fairgrad":
        return aggregation.FairGrad(alpha=1.0), _allocation_sum(1.0)
    if name == "aligned_mtl":
        return aggregation.AlignedMTL(), 1.0
    if name in ("upgrad", "dualproj"):
        pytest.importorskip("quadprog", reason="torchjd's projector needs quadprog and qpsolvers")
        from torchjd.linalg import QuadprogProjector

        # torchjd's default projector adds 1e-4 I to the trace-normalised G, which moves its
        # answer by up to 3% here (cosine 0.97); the QPs themselves agree to rounding.
        projector = QuadprogProjector(norm_eps=0.0, reg_eps=1e-12)
        aggregator = aggregation.UPGrad if name == "upgrad" else aggregation.DualProj
        return aggregator(projector=projector), 1.0
    if name == "conflict_free":
        return aggregation.ConFIG(), float(num_tasks)
    if name == "gradvac":
        return aggregation.GradVac(beta=0.01, eps=0.0), float(num_tasks)
    if name == "rlw":
        return aggregation.Random(), 1.0
    raise KeyError(name)


def _allocation_sum(alpha: float):
    """The ratio sum_i a_i of the solution a on G's scale, a function of J."""
    return lambda task_grads: float(fair_allocation(gram(task_grads).numpy(), alpha).sum())


# Our registry's methods that torchjd also has; the rest of GRADIENT_METHODS are loss weightings
# (GradNorm, DWA, ...) or PCGrad's ablations, which torchjd does not implement.
# name -> (min cosine, relative tolerance on the scale ratio): closed forms agree to rounding;
# MGDA (torchjd: Frank-Wolfe) and CAGrad (both: iterative solvers, SLSQP vs Clarabel) less tightly.
# Measured (T = 2..10, 4 draws each): cosine >= 1 - 1e-12 for mean, imtl_g, pcgrad; 0.99997 for
# mgda (0.43 degrees; torchjd's default epsilon=1e-3, 100 iterations gives 0.948); 0.9999993 for
# cagrad; ratio errors 2e-14 / 4e-4 / 8e-4. The 2020s methods: cosine >= 1 - 1e-15 and ratio
# errors <= 3e-10 for fairgrad (torchjd: least_squares), aligned_mtl, upgrad, dualproj,
# conflict_free, gradvac (over 6 steps, beta 0.01 and 0.5) and rlw; nash_mtl (torchjd: 20 CCP
# steps of cvxpy/ECOS) 1 - 7e-13 and 2e-6 where its CCP converges (its own test below).
SHARED = {
    "mean": (0.9999, 1e-9),
    "imtl_g": (0.9999, 1e-9),
    "pcgrad": (0.9999, 1e-9),
    "mgda": (0.99, 1e-2),
    "cagrad": (0.99, 1e-2),
    "nash_mtl": (0.99, 1e-3),
    "fairgrad": (0.9999, 1e-6),
    "aligned_mtl": (0.9999, 1e-9),
    "upgrad": (0.9999, 1e-8),
    "dualproj": (0.9999, 1e-8),
    "conflict_free": (0.9999, 1e-9),
    "gradvac": (0.9999, 1e-9),
    "rlw": (0.9999, 1e-9),
}
# Stateful in torchjd as in ours (Nash-MTL's CCP warm start, GradVac's targets): each has its own
# test below, which also follows the state over several steps.
OWN_TEST = {"nash_mtl", "gradvac"}


def test_shared_methods_are_in_our_registry():
    assert set(SHARED) <= set(gradients.GRADIENT_METHODS)


def fixed_orders(orders: torch.Tensor, among_others: bool = False):
    """A stand-in for torch.randperm whose i-th call returns task i's order [i, *orders[i]]
    (torchjd's PCGrad skips j == i, and calls randperm once per task, in task order); with
    ``among_others``, the positions of orders[i] in the list of the tasks other than i (torchjd's
    GradVac shuffles that list with randperm(T - 1), once per task, in task order)."""
    calls = iter(range(orders.shape[0]))

    def randperm(n, *args, **kwargs):
        i = next(calls)
        if among_others:
            return orders[i] - (orders[i] > i).long()
        return torch.cat([torch.tensor([i]), orders[i]])

    return randperm


def _assert_agree(name, ours, theirs, ratio, trial) -> None:
    cosine = float(torch.nn.functional.cosine_similarity(ours, theirs, dim=0))
    min_cosine, ratio_tol = SHARED[name]
    assert cosine >= min_cosine, (trial, cosine)
    assert float(theirs.norm() / ours.norm()) == pytest.approx(ratio, rel=ratio_tol), trial


@pytest.mark.parametrize("name", sorted(set(SHARED) - OWN_TEST))
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
        with torch.random.fork_rng():
            # torchjd's Random draws torch.randn from the global generator: seeded as ours is,
            # it draws the same eps.
            torch.manual_seed(trial)
            theirs = aggregator(task_grads)
        monkeypatch.undo()
        ratio = ratio(task_grads) if callable(ratio) else ratio
        _assert_agree(name, ours, theirs, ratio, trial)


def nash_residual(weights: torch.Tensor, task_grads: torch.Tensor) -> float:
    """max_i |a_i (G a)_i - 1|: how far a is from the Nash bargaining solution."""
    return float((weights * (gram(task_grads) @ weights) - 1.0).abs().max())


@pytest.mark.filterwarnings("ignore::UserWarning")  # cvxpy's, on the subproblems ECOS cannot solve
@pytest.mark.parametrize("num_tasks", [2, 3, 5, 7, 10])
def test_nash_mtl_agrees_with_torchjd_where_its_ccp_converges(num_tasks):
    """torchjd's NashMTL is the authors' CCP: where a subproblem is unbounded (2 of the 20 draws
    here, at the first step from a = 1) it keeps its start, a = 1, the sum of the gradients. So
    the directions are compared where its a meets the condition it stops on (residual 1e-3);
    ours meets it everywhere, to 1e-9."""
    rng = np.random.default_rng(100 + num_tasks)
    compared = 0
    for trial in range(4):
        task_grads = torch.as_tensor(conflicting_jacobian(rng, num_tasks, 3 * num_tasks + 7))
        aggregator, ratio = torchjd_aggregator("nash_mtl", num_tasks)
        ours = gradients.make("nash_mtl", num_tasks).combine(task_grads, None)
        allocation = torch.as_tensor(fair_allocation(gram(task_grads).numpy()))
        assert nash_residual(allocation, task_grads) < 1e-9
        their_weights = aggregator.weighting(task_grads)
        if nash_residual(their_weights, task_grads) > 1e-3:
            continue
        compared += 1
        _assert_agree("nash_mtl", ours, their_weights @ task_grads, ratio(task_grads), trial)
    assert compared >= 3


@pytest.mark.parametrize("beta", [0.01, 0.5])
@pytest.mark.parametrize("num_tasks", [2, 3, 5, 7, 10])
def test_gradvac_agrees_with_torchjd_step_after_step(num_tasks, beta, monkeypatch):
    """Six steps of one method and one aggregator, so the targets phi_hat evolve in both (beta 0.5,
    torchjd's default, moves them fast). torchjd's task orders are handed ours, as for PCGrad."""
    rng = np.random.default_rng(200 + num_tasks)
    aggregation = pytest.importorskip("torchjd.aggregation")
    aggregator = aggregation.GradVac(beta=beta, eps=0.0)
    method = gradients.make("gradvac", num_tasks, seed=3, beta=beta)
    mirror = torch.Generator().manual_seed(3)  # draws the orders the method will draw
    for step in range(6):
        task_grads = torch.as_tensor(conflicting_jacobian(rng, num_tasks, 3 * num_tasks + 7))
        orders = random_orders(num_tasks, mirror)
        monkeypatch.setattr(torch, "randperm", fixed_orders(orders, among_others=True))
        theirs = aggregator(task_grads)
        monkeypatch.undo()
        ours = method.combine(task_grads, None)
        _assert_agree("gradvac", ours, theirs, float(num_tasks), step)
    assert method.targets.abs().max() > 0  # the targets did move


# --- the stateful weightings of 2022-2024: step after step, fed the same matrices ----------------
# SDMGrad, MoDo, ExcessMTL and CR-MOGM keep state across calls in torchjd as in ours (SDMGrad's and
# MoDo's simplex weights, ExcessMTL's squared-gradient sums and weights, CR-MOGM's average), so each
# is compared over several steps of one instance of each. Scale: ours and torchjd's weights both
# sum to 1 (ratio 1); torchjd's SDMGrad and MoDo take any matrix (the paper's J_1 J_2^T), ours G.


def _weights_step_after_step(ours, theirs, num_tasks: int, seed: int, steps: int = 6):
    rng = np.random.default_rng(seed)
    for step in range(steps):
        task_grads = torch.as_tensor(conflicting_jacobian(rng, num_tasks, 3 * num_tasks + 7))
        yield step, task_grads, ours(task_grads), theirs(task_grads)


@pytest.mark.parametrize("num_tasks", [2, 3, 5, 10])
@pytest.mark.parametrize("name", ["sdmgrad", "modo"])
def test_sdmgrad_and_modo_weights_match_torchjd_step_after_step(name, num_tasks):
    aggregation = pytest.importorskip("torchjd.aggregation")
    theirs = aggregation.SDMGradWeighting() if name == "sdmgrad" else aggregation.MoDoWeighting()
    method = gradients.make(name, num_tasks)
    weights = []
    for step, _, w, w_torchjd in _weights_step_after_step(
        lambda J: method.weights(gram(J), None, StepContext()),
        lambda J: theirs(gram(J)),
        num_tasks,
        seed=300 + num_tasks,
    ):
        assert torch.allclose(w, w_torchjd, rtol=1e-9, atol=1e-12), (step, w, w_torchjd)
        weights.append(w)
    assert not torch.allclose(weights[0], weights[-1])  # the state did move


@pytest.mark.parametrize("warmup", [0, 3])
@pytest.mark.parametrize("num_tasks", [2, 3, 5, 10])
def test_excess_mtl_weights_match_torchjd_step_after_step(num_tasks, warmup):
    """torchjd's ExcessMTLWeighting reads J itself; ours the engine's blocks (two here, so the
    per-coordinate sums are split over parameters as in training)."""
    aggregation = pytest.importorskip("torchjd.aggregation")
    theirs = aggregation.ExcessMTLWeighting(n_warmup_steps=warmup)
    method = gradients.make("excess_mtl", num_tasks, warmup=warmup)
    size = 3 * num_tasks + 7
    layout = [("0.weight", size - 4), ("0.bias", 4)]

    def ours(task_grads):
        blocks = list(task_grads.split([n for _, n in layout], dim=1))
        method.combine_blocks(blocks, gram(task_grads), None, StepContext())
        return method.task_weights  # the weights it stepped with

    for step, _, w, w_torchjd in _weights_step_after_step(
        ours, theirs, num_tasks, seed=400 + num_tasks, steps=8
    ):
        assert torch.allclose(w, w_torchjd, rtol=1e-9, atol=1e-12), (step, w, w_torchjd)
    assert not torch.allclose(w, torch.full_like(w, 1 / num_tasks))  # the weights did move


@pytest.mark.parametrize("base", ["imtl_g", "upgrad"])
@pytest.mark.parametrize("num_tasks", [2, 3, 5, 10])
def test_cr_mogm_matches_torchjds_average_of_the_same_weighting(base, num_tasks):
    """Two exact inner weightings (torchjd's MGDA is Frank-Wolfe, tens of seconds to converge;
    our default base, MGDA, is checked against our own MGDA in test_gradient_methods_2023)."""
    aggregation = pytest.importorskip("torchjd.aggregation")
    if base == "imtl_g":
        inner, tolerance = aggregation.IMTLGWeighting(), 1e-9
    else:
        pytest.importorskip("quadprog", reason="torchjd's projector needs quadprog and qpsolvers")
        from torchjd.linalg import QuadprogProjector

        inner = aggregation.UPGradWeighting(
            projector=QuadprogProjector(norm_eps=0.0, reg_eps=1e-12)
        )
        tolerance = 1e-7
    theirs = aggregation.CRMOGMWeighting(inner, alpha=0.7)
    method = gradients.make("cr_mogm", num_tasks, base=base, alpha=0.7)
    for step, _, w, w_torchjd in _weights_step_after_step(
        lambda J: method.weights(gram(J), None, StepContext()),
        lambda J: theirs(gram(J)),
        num_tasks,
        seed=500 + num_tasks,
    ):
        assert torch.allclose(w, w_torchjd.double(), rtol=tolerance, atol=tolerance), step
