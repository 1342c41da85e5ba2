"""Properties every registered gradient method must have, checked on many random Jacobians
through the contract training uses (``weights(G, losses, context)``, via ``combine``).

A new method joins by registering: it is then tested here, and must state its scale convention in
``SCALE`` (the test fails for a method without one).
"""

from __future__ import annotations

import pytest
import torch

from mtrl import gradients
from mtrl.gradients import GRADIENT_METHODS
from mtrl.gradients.base import BlockAggregator, StepContext, task_weights
from mtrl.gradients.gram import gram

# Methods whose weights depend on a random draw (PCGrad's and GradVac's task orders, RLW's
# weights): not permutation equivariant draw by draw.
RANDOM = {"pcgrad", "pcgrad_dir", "pcgrad_mag", "gradvac", "rlw"}


def _sums_to_one(J, w, d) -> bool:
    return bool(torch.isclose(w.sum(), torch.ones((), dtype=w.dtype)))


def _cagrad_ball(J, w, d) -> bool:
    """d is returned divided by 1 + c, as in the authors' code: ||(1 + c) d - g_0|| = c ||g_0||."""
    c, g0 = 0.4, J.mean(0)
    return bool(torch.isclose(((1 + c) * d - g0).norm(), c * g0.norm(), rtol=1e-4))


def _exp_of_zero(J, w, d) -> bool:
    return bool(torch.allclose(w, torch.full_like(w, 1 / len(w))))


# name -> (the convention, its check on (J, w, d = w @ J), whether it holds under conflict too).
# PCGrad and its ablations average the per-task surgered gradients: the mean where nothing
# conflicts (their conflict cases are hand-checked in test_gradients.py and against torchjd).
SCALE = {name: ("weights sum to 1", _sums_to_one, True) for name in GRADIENT_METHODS}
for name in RANDOM:
    SCALE[name] = ("the mean where no pair conflicts", _sums_to_one, False)
SCALE["cagrad"] = ("d / (1 + c), d in the ball of radius c ||g_0|| around g_0", _cagrad_ball, True)
SCALE["uncertainty"] = ("w_i = exp(-s_i) / T, s = 0 at the start", _exp_of_zero, True)


def _aligned_mean(J, w, d) -> bool:
    """The mean of T orthogonal aligned gradients of norm sigma_min(J) (J has full row rank)."""
    sigma_min = torch.linalg.svdvals(J).min()
    return bool(torch.isclose(d.norm(), sigma_min / len(w) ** 0.5, rtol=1e-6))


def _mean_projection(J, w, d) -> bool:
    """ConFIG's length: the mean of the task gradients' projections onto its direction."""
    return bool(torch.isclose(d.norm(), (J @ d).mean() / d.norm(), rtol=1e-9))


# Nash-MTL's and FairGrad's own d are not normalised (Nash-MTL's has norm sqrt(T)); ours divide
# the weights by their sum. UPGrad, DualProj and GradVac only add to the mean where tasks
# conflict (UPGrad and DualProj's weights are then >= 1/T, checked in test_gradient_methods_2020s).
SCALE["nash_mtl"] = ("a / sum_i a_i: weights sum to 1", _sums_to_one, True)
SCALE["fairgrad"] = ("w / sum_i w_i: weights sum to 1", _sums_to_one, True)
SCALE["aligned_mtl"] = ("||d|| = sigma_min(J) / sqrt(T), the aligned mean", _aligned_mean, True)
SCALE["upgrad"] = ("the mean where no pair conflicts", _sums_to_one, False)
SCALE["dualproj"] = ("the mean where no pair conflicts", _sums_to_one, False)
SCALE["conflict_free"] = ("||d|| = the mean projection onto d / ||d||", _mean_projection, True)
SCALE["gradvac"] = ("the mean where no cosine is below its target", _sums_to_one, False)
SCALE["rlw"] = ("loss weights T softmax(eps): weights sum to 1", _sums_to_one, True)
SCALE["famo"] = ("(z_i / L_i) / sum_j z_j / L_j: weights sum to 1", _sums_to_one, True)


def _mean_where_signs_agree(J, w, d) -> bool:
    agree = (J > 0).all(0) | (J < 0).all(0)
    return bool(agree.any()) and torch.allclose(d[agree], J.mean(0)[agree], rtol=1e-9)


SCALE["graddrop"] = ("the mean on coordinates whose signs agree", _mean_where_signs_agree, False)


def _mean_of_unit_directions(J, w, d) -> bool:
    """DB-MTL's first step: (1/T) sum_i alpha_i g_i / L_i with every term of one norm, i.e. along
    the mean of the unit task gradients (whatever the losses)."""
    units = (J / J.norm(dim=1, keepdim=True)).mean(0)
    return bool(torch.nn.functional.cosine_similarity(d, units, dim=0) > 1 - 1e-9)


def _modo_first_step(J, w, d) -> bool:
    """MoCo's first step: Y = J, so MoDo's projected step from 1/T (gamma 0.1, rho 0) on J."""
    T = J.shape[0]
    lambd = gradients.make("modo", T, gamma=0.1, rho=0.0).weights(gram(J), None, StepContext())
    return torch.allclose(d, lambd.to(J) @ J, rtol=1e-9, atol=1e-12)


def _excess_first_step(J, w, d) -> bool:
    """ExcessMTL's first step (Eq. 6-9 from uniform weights, the first excess risks E used raw):
    d = softmax(E) @ J, E_i = sum_p g_ip^2 / sqrt(g_ip^2 + eps): weights on the simplex."""
    from mtrl.gradients.excess_mtl import ADAGRAD_EPS

    risks = (J.square() / (J.square() + ADAGRAD_EPS).sqrt()).sum(1)
    return torch.allclose(d, torch.softmax(risks, 0) @ J, rtol=1e-9, atol=1e-12)


# SDMGrad, MoDo, CR-MOGM (of MGDA) and STCH keep "weights sum to 1".
SCALE["excess_mtl"] = ("softmax(E) @ J: weights on the simplex", _excess_first_step, True)
SCALE["moco"] = (
    "sum_i lambda_i y_i, lambda in the simplex (y = g at the start)",
    _modo_first_step,
    True,
)
SCALE["db_mtl"] = (
    "(1/T) sum_i alpha_i g^_i, every term of the largest norm",
    _mean_of_unit_directions,
    True,
)


def jacobians(seed: int, conflicting: bool, count: int = 40):
    """(J [T, P], losses [T]) with T = 2..10, unequal norms (x0.1..x10), float64."""
    generator = torch.Generator().manual_seed(seed)
    for k in range(count):
        num_tasks = 2 + k % 9
        size = 3 * num_tasks + 5
        J = torch.randn(num_tasks, size, generator=generator, dtype=torch.float64)
        if not conflicting:  # a shared component that dominates: every pair has g_i . g_j > 0
            J = J * 0.2 + 1.0
        scale = 10 ** (2 * torch.rand(num_tasks, 1, generator=generator, dtype=torch.float64) - 1)
        losses = torch.rand(num_tasks, generator=generator, dtype=torch.float64) + 0.1
        yield J * scale, losses


# Methods whose step combines coordinates, not tasks (GradDrop): no weights; their properties
# are checked on the step d itself.
COORDINATES = {name for name, cls in GRADIENT_METHODS.items() if issubclass(cls, BlockAggregator)}
WEIGHTED = sorted(set(GRADIENT_METHODS) - COORDINATES)


def _weights(name: str, J: torch.Tensor, losses: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The weights as the engine gets them (``combine_blocks``, J one block): ``weights(G, ...)``
    for a Gram or loss weighting, the gradients' coordinates for ExcessMTL."""
    method = gradients.make(name, J.shape[0], seed=seed)
    G = gram(J)
    return task_weights(method, G, losses.to(J.dtype), StepContext(("weight",), (G,)))


def _step(name: str, J: torch.Tensor, losses: torch.Tensor, seed: int = 0):
    """(w, d): the weights (None for a coordinate method) and the step d."""
    if name in COORDINATES:
        return None, gradients.make(name, J.shape[0], seed=seed).combine(J, losses)
    w = _weights(name, J, losses, seed)
    return w, w.to(J) @ J


def test_every_method_states_its_scale_convention():
    assert set(SCALE) == set(GRADIENT_METHODS)


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_weights_are_finite_on_conflicting_and_degenerate_jacobians(name):
    cases = list(jacobians(1, conflicting=True, count=20))
    base = torch.randn(4, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cases.append((torch.cat([base[:3], torch.zeros(1, 12, dtype=base.dtype)]), torch.ones(4)))
    cases.append((base[:1].repeat(4, 1), torch.ones(4)))  # identical gradients
    cases.append((torch.cat([base[:2], -base[:2]]), torch.ones(4)))  # exact opposites
    cases.append((base * 1e-12, torch.full((4,), 1e-9)))  # tiny gradients and losses
    for J, losses in cases:
        w, d = _step(name, J, losses)
        assert w is None or (w.shape == (J.shape[0],) and torch.isfinite(w).all()), (name, w)
        assert (
            torch.isfinite(d).all()
            and torch.isfinite(gradients.make(name, J.shape[0]).combine(J, losses)).all()
        )


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_without_conflict_the_step_is_a_positive_combination_that_helps_every_task(name):
    for J, losses in jacobians(3, conflicting=False):
        w, d = _step(name, J, losses)
        if name in COORDINATES:  # no weights: only the help to every task
            assert (J @ d >= -1e-9 * J.norm(dim=1) * d.norm()).all(), name
            continue
        if name in ("imtl_g", "conflict_free"):
            # IMTL-G's defining property, equal projections onto every unit task gradient; its
            # weights may be negative (as torchjd's IMTLG's are), so only the projections are
            # checked (they are positive on these well-conditioned J). ConFIG takes the same
            # direction with another length, and has the same weights up to a positive factor.
            projections = (J / J.norm(dim=1, keepdim=True)) @ d
            assert torch.allclose(projections, projections[0].expand_as(projections), rtol=1e-6)
            assert projections[0] > 0
            continue
        if name == "aligned_mtl":
            # Aligned-MTL's weights are sigma_min G^(-1/2) omega on a full-rank G: negative
            # wherever the gradients' norms differ (as torchjd's AlignedMTL's are), so only the
            # help to every task is checked (J d = sigma_min G^(1/2) omega, positive here).
            assert (J @ d >= -1e-9 * J.norm(dim=1) * d.norm()).all(), name
            continue
        assert (w >= -1e-12).all() and w.sum() > 0, (name, w)
        assert (J @ d >= -1e-9 * J.norm(dim=1) * d.norm()).all(), name


@pytest.mark.parametrize("name", sorted(COORDINATES))
def test_coordinate_methods_step_the_same_in_any_task_order_given_the_same_draw(name):
    for k, (J, losses) in enumerate(jacobians(4, conflicting=True, count=20)):
        permutation = torch.randperm(J.shape[0], generator=torch.Generator().manual_seed(k))
        _, d = _step(name, J, losses)
        _, d_permuted = _step(name, J[permutation], losses[permutation])
        assert torch.allclose(d_permuted, d, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("name", sorted(set(WEIGHTED) - RANDOM))
def test_deterministic_methods_are_permutation_equivariant(name):
    for k, (J, losses) in enumerate(jacobians(4, conflicting=True, count=20)):
        permutation = torch.randperm(J.shape[0], generator=torch.Generator().manual_seed(k))
        w = _weights(name, J, losses)
        w_permuted = _weights(name, J[permutation], losses[permutation])
        assert torch.allclose(w_permuted, w[permutation], rtol=1e-5, atol=1e-8), name


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_methods_are_equivariant_given_the_same_draw(name):
    """PCGrad with every task's order fixed: permuting the tasks permutes the weights. Two tasks
    have one order only, so any draw is the same draw."""
    for J, losses in jacobians(5, conflicting=True, count=10):
        J, losses = J[:2], losses[:2]
        w = _weights(name, J, losses)
        if name == "rlw":
            # RLW's weights are the draw itself, whatever the tasks: the same draw gives the same
            # weights in any task order (its distribution is what is exchangeable).
            assert torch.equal(_weights(name, J.flip(0), losses.flip(0)), w)
            continue
        assert torch.allclose(_weights(name, J.flip(0), losses.flip(0)), w.flip(0), rtol=1e-9)


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_scale_convention(name):
    _, check, under_conflict = SCALE[name]
    for J, losses in jacobians(6, conflicting=under_conflict, count=20):
        w, d = _step(name, J, losses)
        assert check(J, w, d), (name, w)


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_identical_tasks_give_the_mean(name):
    """With T copies of one gradient (and equal losses) nothing distinguishes the tasks: the step
    is that gradient. The weights themselves need not be
    equal where the problem is degenerate (MGDA's min-norm point is any point of the simplex)."""
    g = torch.randn(1, 30, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    J = g.repeat(4, 1)
    _, d = _step(name, J, torch.ones(4, dtype=J.dtype))
    assert torch.allclose(d, g[0], rtol=1e-6), name
