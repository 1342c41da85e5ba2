"""The methods of 2020-2025 (Nash-MTL, FairGrad, Aligned-MTL, UPGrad, DualProj, ConFIG, GradVac,
RLW), each against a hand-computed or independently solved case; their options, state round trips,
and a few SAC updates with each. The properties every method shares are in
test_gradient_properties.py, the agreement with torchjd in test_torchjd_agreement.py."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares, minimize

from mtrl import gradients
from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import AgentConfig
from mtrl.gradients.aligned_mtl import aligned_transform
from mtrl.gradients.base import LossWeighting, StepContext
from mtrl.gradients.gradvac import gradvac_coefficients
from mtrl.gradients.gram import gram
from mtrl.gradients.nash_mtl import fair_allocation
from mtrl.gradients.pcgrad import pcgrad_coefficients, random_orders
from mtrl.gradients.upgrad import dual_cone_weights
from mtrl.training.replay import Batch

NEW = [
    "nash_mtl",
    "fairgrad",
    "aligned_mtl",
    "upgrad",
    "dualproj",
    "conflict_free",
    "gradvac",
    "rlw",
]


def conflicting(seed: int, num_tasks: int, size: int | None = None) -> torch.Tensor:
    """J [T, P] float64: some tasks oppose a shared direction, norms over ~2 decades."""
    rng = np.random.default_rng(seed)
    size = size or 3 * num_tasks + 7
    signs = np.where(rng.random(num_tasks) < 0.3, -1.0, 1.0)
    signs[:2] = [1.0, -1.0][:num_tasks]
    J = 0.7 * signs[:, None] * rng.normal(size=size) + rng.normal(size=(num_tasks, size))
    J *= np.exp(rng.uniform(-2.3, 2.3, size=(num_tasks, 1))) / np.linalg.norm(J, axis=1)[:, None]
    return torch.as_tensor(J)


def weights_of(method, J: torch.Tensor) -> torch.Tensor:
    G = gram(J)
    return method.weights(G, torch.ones(J.shape[0], dtype=J.dtype), StepContext(("weight",), (G,)))


# --- Nash-MTL and FairGrad ----------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [2, 3, 5, 10, 20, 50])
def test_nash_mtl_solves_the_bargaining_condition(num_tasks):
    for seed in range(4):
        J = conflicting(seed, num_tasks)
        G = gram(J).numpy()
        a = fair_allocation(G)
        assert (a > 0).all()
        assert np.abs(a * (G @ a) - 1.0).max() < 1e-8  # (G a)_i = 1 / a_i
        w = weights_of(gradients.make("nash_mtl", num_tasks), J).numpy()
        assert np.allclose(w, a / a.sum(), rtol=1e-12, atol=0)
        # The condition only sees directions: rescaling g_i by s_i rescales a_i by 1 / s_i.
        s = np.exp(np.random.default_rng(seed).uniform(-3, 3, size=num_tasks))
        assert np.allclose(fair_allocation(G * np.outer(s, s)), a / s, rtol=1e-8)


def test_nash_mtl_of_two_tasks_in_closed_form():
    """T = 2: a_1 ||g_1||^2 + a_2 g_12 = 1 / a_1 and symmetrically; with b_i = a_i ||g_i|| and
    cosine c this is b_i^2 + b_1 b_2 c = 1, so b_1 = b_2 = 1 / sqrt(1 + c)."""
    J = torch.tensor([[3.0, 0.0], [-1.0, 2.0]], dtype=torch.float64)
    norms = J.norm(dim=1)
    cosine = float(J[0] @ J[1] / (norms[0] * norms[1]))
    expected = 1.0 / math.sqrt(1.0 + cosine) / norms.numpy()
    assert np.allclose(fair_allocation(gram(J).numpy()), expected, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("num_tasks", [2, 5, 10, 50])
def test_fairgrad_solves_the_alpha_fair_condition(alpha, num_tasks):
    for seed in range(3):
        J = conflicting(10 + seed, num_tasks)
        G = gram(J).numpy()
        w = fair_allocation(G, alpha)
        assert (w > 0).all()
        assert np.allclose(G @ w, w ** (-1.0 / alpha), rtol=1e-8, atol=0)  # (G w)_i = w_i^(-1/a)
        ours = weights_of(gradients.make("fairgrad", num_tasks, alpha=alpha), J).numpy()
        assert np.allclose(ours, w / w.sum(), rtol=1e-12, atol=0)
    nash = weights_of(gradients.make("nash_mtl", num_tasks), J)
    if alpha == 1.0:  # proportional fairness is Nash-MTL's condition
        assert torch.equal(weights_of(gradients.make("fairgrad", num_tasks), J), nash)


def test_fairgrad_against_an_independent_least_squares_solve():
    """The authors' solver (scipy's least_squares on the residual, from the uniform start), with
    its tolerances tightened."""
    J = conflicting(3, 6)
    G = gram(J).numpy()
    for alpha in (0.5, 1.0, 2.0):
        reference = least_squares(
            lambda w, a=alpha: G @ w - w ** (-1.0 / a),
            np.full(6, 1.0 / 6),
            bounds=(0, np.inf),
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
        ).x
        assert np.allclose(fair_allocation(G, alpha), reference, rtol=1e-7)


def test_a_zero_gradient_gets_no_weight_and_the_others_bargain_alone():
    J = conflicting(4, 4)
    with_zero = torch.cat([J[:3], torch.zeros(1, J.shape[1], dtype=J.dtype)])
    a = fair_allocation(gram(with_zero).numpy())
    assert a[3] == 0.0
    assert np.allclose(a[:3], fair_allocation(gram(J[:3]).numpy()), rtol=1e-10)


def test_nash_mtl_solves_on_every_call_and_leaves_its_schedule_to_the_engine():
    """``update_every`` is the engine's schedule (``GramWeighting.update_every``): the method
    itself solves whenever it is asked."""
    method = gradients.make("nash_mtl:update_every=3", 4)
    assert method.update_every == 3 and gradients.make("nash_mtl", 4).update_every == 1
    for k in range(4):
        J = conflicting(20 + k, 4)
        assert torch.equal(weights_of(method, J), weights_of(gradients.make("nash_mtl", 4), J))


def test_nash_mtl_max_norm_clips_only_larger_steps():
    J = conflicting(5, 4) * 50
    G = gram(J)
    free = weights_of(gradients.make("nash_mtl", 4), J)
    norm = float((free @ G @ free).sqrt())
    clipped = weights_of(gradients.make("nash_mtl", 4, max_norm=norm / 2), J)
    assert torch.allclose(clipped, free / 2, rtol=1e-12)
    assert torch.equal(weights_of(gradients.make("nash_mtl", 4, max_norm=2 * norm), J), free)


# --- UPGrad and DualProj ------------------------------------------------------------------------


def scipy_qp(G: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """argmin_{v >= lower} v^T G v by L-BFGS-B, run to its tolerance floor."""
    return minimize(
        lambda v: v @ G @ v,
        lower,
        jac=lambda v: 2.0 * G @ v,
        bounds=[(b, None) for b in lower],
        method="L-BFGS-B",
        options={"ftol": 1e-16, "gtol": 1e-13, "maxiter": 20000},
    ).x


@pytest.mark.parametrize("num_tasks", [2, 3, 5, 8, 12])
def test_dual_cone_qps_match_scipy_and_their_kkt_conditions(num_tasks):
    for seed in range(4):
        # P below T too (rank-deficient G: the weights are then not unique, the values are).
        size = 3 * num_tasks + 7 if seed % 2 else max(2, num_tasks // 2 + 1)
        G = gram(conflicting(30 + seed, num_tasks, size)).numpy()
        scale = G.diagonal().max()
        lowers = np.vstack([np.eye(num_tasks), np.full((1, num_tasks), 1.0 / num_tasks)])
        V = dual_cone_weights(G, lowers)
        for v, lower in zip(V, lowers, strict=True):
            assert (v >= lower).all()
            reference = scipy_qp(G, lower)
            assert v @ G @ v <= reference @ G @ reference + 1e-10 * scale
            products = G @ v  # KKT: G v >= 0, and = 0 wherever v is above its bound
            assert (products >= -1e-10 * scale).all()
            assert np.abs(products[v > lower + 1e-9]).max(initial=0.0) <= 1e-10 * scale


def test_upgrad_and_dualproj_by_hand():
    """g_1 = (1, 0), g_2 = (-1, 1): projecting g_1 off g_2 gives (1/2, 1/2) = g_1 + g_2 / 2, and
    g_2 off g_1 gives (0, 1) = g_1 + g_2, so UPGrad's weights are ((1, 1/2) + (1, 1)) / 2. With
    g_2 = (-2, 1/2) the mean (-1/2, 1/4) conflicts with g_1; projected: (0, 1/4) = g_1 + g_2 / 2."""
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    upgrad = weights_of(gradients.make("upgrad", 2), J)
    assert torch.allclose(upgrad, torch.tensor([1.0, 0.75], dtype=J.dtype), atol=1e-12)
    J = torch.tensor([[1.0, 0.0], [-2.0, 0.5]], dtype=torch.float64)
    dualproj = weights_of(gradients.make("dualproj", 2), J)
    assert torch.allclose(dualproj, torch.tensor([1.0, 0.5], dtype=J.dtype), atol=1e-12)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
def test_dual_cone_steps_help_every_task_with_weights_at_least_the_mean(name):
    for seed in range(6):
        J = conflicting(40 + seed, 2 + seed)
        w = weights_of(gradients.make(name, J.shape[0]), J)
        assert (w >= 1.0 / len(w) - 1e-12).all()
        d = w @ J
        assert (J @ d >= -1e-10 * J.norm(dim=1) * d.norm()).all()


# --- Aligned-MTL --------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [2, 4, 10])
def test_aligned_mtl_makes_the_task_gradients_orthogonal_with_equal_norms(num_tasks):
    J = conflicting(50, num_tasks)  # full row rank
    G = gram(J)
    B = aligned_transform(G)
    aligned = B @ J  # the aligned task gradients
    sigma = torch.linalg.svdvals(J)
    expected = sigma.min() ** 2 * torch.eye(num_tasks, dtype=J.dtype)
    assert torch.allclose(aligned @ aligned.T, expected, atol=1e-10 * sigma.max() ** 2)
    # Independently, from the SVD J = U S V^T: the aligned gradients are sigma_min U V^T.
    U, _, Vh = torch.linalg.svd(J, full_matrices=False)
    assert torch.allclose(aligned, sigma.min() * U @ Vh, atol=1e-10 * sigma.max())
    w = weights_of(gradients.make("aligned_mtl", num_tasks), J)
    assert torch.allclose(w @ J, aligned.mean(0), atol=1e-10 * sigma.max())


def test_aligned_mtl_preferences_are_normalised_and_checked():
    J = conflicting(51, 3)
    preferred = gradients.make("aligned_mtl:preferences=1;2;1", 3)
    omega = torch.tensor([0.25, 0.5, 0.25], dtype=J.dtype)
    assert torch.allclose(weights_of(preferred, J), aligned_transform(gram(J)) @ omega)
    uniform = gradients.make("aligned_mtl", 3, preferences=[2, 2, 2])
    assert torch.allclose(weights_of(uniform, J), weights_of(gradients.make("aligned_mtl", 3), J))
    for bad in ([1, 2], [1, -1, 1], [0, 0, 0], "a;b;c"):
        with pytest.raises(ValueError, match="^aligned_mtl: preferences"):
            gradients.make("aligned_mtl", 3, preferences=bad)


# --- ConFIG -------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks", [2, 3, 6, 10])
def test_conflict_free_has_equal_projections_and_the_mean_projection_as_length(num_tasks):
    J = conflicting(60, num_tasks)
    d = weights_of(gradients.make("conflict_free", num_tasks), J) @ J
    units = J / J.norm(dim=1, keepdim=True)
    projections = units @ d
    assert torch.allclose(projections, projections[0].expand_as(projections), rtol=1e-9)
    assert projections[0] > 0
    direction = torch.linalg.pinv(units) @ torch.ones(num_tasks, dtype=J.dtype)  # the paper's
    direction = direction / direction.norm()
    assert torch.allclose(d, (J @ direction).mean() * direction, rtol=1e-9, atol=1e-12)


# --- GradVac ------------------------------------------------------------------------------------


def test_gradvac_by_hand_two_steps_with_its_ema():
    """g_1 = (1, 0), g_2 = (-1, 1), cos phi = -1/sqrt(2), beta = 1/2. Step 1 (phi_hat = 0) is
    PCGrad: g_1' = g_1 + g_2 / 2, g_2' = g_1 + g_2; then phi_hat = -1/(2 sqrt(2)) for both pairs.
    Step 2 on the same gradients corrects towards phi_hat: g_1' = g_1 + k ||g_1|| / ||g_2|| g_2 with
    k = (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / sqrt(1 - phi_hat^2), and
    symmetrically; phi_hat then moves halfway to phi."""
    J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    method = gradients.make("gradvac", 2, beta=0.5)
    assert torch.allclose(weights_of(method, J), torch.tensor([1.0, 0.75], dtype=J.dtype))
    phi = -1 / math.sqrt(2)
    target = 0.5 * phi
    assert torch.allclose(method.targets, torch.tensor([[0.0, target], [target, 0.0]]).double())
    k = (target * math.sqrt(1 - phi**2) - phi * math.sqrt(1 - target**2)) / math.sqrt(1 - target**2)
    n1, n2 = 1.0, math.sqrt(2)
    expected = torch.tensor([1.0 + k * n2 / n1, k * n1 / n2 + 1.0], dtype=J.dtype) / 2
    assert torch.allclose(weights_of(method, J), expected, rtol=1e-12)
    corrected = J[0] + k * n1 / n2 * J[1]  # its cosine with g_2 is now the target
    assert math.isclose(float(corrected @ J[1] / corrected.norm() / J[1].norm()), target)
    second = 0.5 * target + 0.5 * phi
    assert torch.allclose(method.targets, torch.tensor([[0.0, second], [second, 0.0]]).double())


def test_gradvac_with_zero_targets_is_pcgrad():
    for num_tasks in (3, 6, 10):
        G = gram(conflicting(70 + num_tasks, num_tasks))
        orders = random_orders(num_tasks, torch.Generator().manual_seed(num_tasks))
        targets = np.zeros((num_tasks, num_tasks))
        ours = gradvac_coefficients(G.numpy(), orders.numpy(), targets, beta=0.0)
        assert np.allclose(ours, pcgrad_coefficients(G, orders).numpy(), rtol=1e-12, atol=1e-14)
        assert not targets.any()  # beta = 0: they never move


# --- RLW ----------------------------------------------------------------------------------------


def test_rlw_weights_are_t_softmax_of_the_generators_normal_draw():
    method = gradients.make("rlw", 5, seed=11)
    mirror = torch.Generator().manual_seed(11)
    draws = []
    for _ in range(4000):
        w = method.loss_weights(torch.rand(5, dtype=torch.float64))
        expected = 5 * torch.softmax(torch.randn(5, generator=mirror, dtype=torch.float64), 0)
        assert torch.allclose(w, expected, rtol=1e-14)
        assert math.isclose(float(w.sum()), 5.0, rel_tol=1e-14)
        draws.append(w)
    draws = torch.stack(draws)
    assert torch.allclose(draws.mean(0), torch.ones(5, dtype=draws.dtype), atol=0.03)
    assert (draws > 0).all() and draws.std(0).min() > 0.3  # random, not the mean in disguise
    assert isinstance(method, LossWeighting)  # one backward pass, no per-task gradients


# --- options, state, training -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "nash_mtl:update_every=0",
        "nash_mtl:update_every=1.5",
        "nash_mtl:max_norm=-1",
        "nash_mtl:update_every=2,max_norm=1",
        "fairgrad:alpha=0",
        "gradvac:beta=1.5",
        "aligned_mtl:preferences=1",
    ],
)
def test_bad_options_are_one_line_errors_that_name_the_method(spec):
    with pytest.raises(ValueError, match=f"^{spec.split(':')[0]}: "):
        gradients.make(spec, 3)


@pytest.mark.parametrize("spec", ["gradvac:beta=0.5", "nash_mtl:update_every=3"])
def test_stateful_methods_round_trip_through_a_checkpoint(spec, tmp_path):
    from mtrl.training.checkpoint import load_checkpoint, save_checkpoint

    method = gradients.make(spec, 4, seed=2)
    for k in range(4):
        weights_of(method, conflicting(80 + k, 4))
    save_checkpoint(tmp_path / "method.pt", {"method": method.state_dict()})  # weights_only-safe
    restored = gradients.make(spec, 4, seed=5)
    restored.load_state_dict(load_checkpoint(tmp_path / "method.pt")["method"])
    for k in range(5):
        J = conflicting(90 + k, 4)
        assert torch.equal(weights_of(restored, J), weights_of(method, J)), k


T, B, STATE, A = 3, 8, 5, 2


def _batch(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(T).unsqueeze(1).expand(T, B, T)
    return Batch(
        obs=torch.cat([torch.randn(T, B, STATE, generator=g), one_hot], -1),
        action=torch.rand(T, B, A, generator=g) * 2 - 1,
        reward=torch.randn(T, B, generator=g),
        next_obs=torch.cat([torch.randn(T, B, STATE, generator=g), one_hot], -1),
        terminated=torch.zeros(T, B),
    )


@pytest.mark.parametrize("name", NEW)
def test_sac_trains_with_each_method(name):
    torch.manual_seed(0)
    config = AgentConfig(hidden_sizes=(16, 16), critic_grad=name, actor_grad=name, compile=False)
    agent = MultiTaskSAC(STATE + T, A, T, config)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    for step in range(3):
        metrics = agent.update(_batch(step))
        for key, value in metrics.items():
            assert torch.isfinite(value).all(), (name, key)
    assert any(
        not torch.equal(p, q) for p, q in zip(before, agent.critic.parameters(), strict=True)
    )


def test_nash_mtl_between_solves_takes_one_backward_pass_with_the_solved_weights(monkeypatch):
    """Nash-MTL-k (update_every=k) needs task gradients only on the updates that solve: in
    between, its step sum_i a_i g_i is the gradient of sum_i a_i L_i (one backward pass)."""
    from test_sac import OBS, A, T, _batch

    from mtrl.agents.sac import MultiTaskSAC
    from mtrl.config import AgentConfig
    from mtrl.gradients.step import GradientStep

    passes = []
    original = GradientStep.per_task_gradients

    def counted(self, *args, **kwargs):
        passes.append(self.role)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GradientStep, "per_task_gradients", counted)
    torch.manual_seed(0)
    config = AgentConfig(
        hidden_sizes=(16, 16),
        critic_grad="nash_mtl:update_every=3",
        diagnostics_every=0,
        compile=False,
    )
    agent = MultiTaskSAC(OBS, A, T, config)
    solved = []
    for seed in range(7):
        agent.update(_batch(seed=seed))
        solved.append(agent.critic_step.previous.clone())
    assert passes.count("critic") == 3  # updates 1, 4 and 7
    assert torch.equal(solved[0], solved[2]) and not torch.equal(solved[2], solved[3])


def test_the_nash_mtl_schedule_resumes_from_a_checkpoint_under_its_old_keys():
    """The engine keeps Nash-MTL-k's schedule under the keys the method kept it by
    ("calls", "previous"), so checkpoints load either way and a resumed agent solves when the
    uninterrupted one does."""
    from test_sac import OBS, A, T, _batch

    config = AgentConfig(
        hidden_sizes=(16, 16), critic_grad="nash_mtl:update_every=3", compile=False
    )
    torch.manual_seed(0)
    agent = MultiTaskSAC(OBS, A, T, config)
    for seed in range(2):
        agent.update(_batch(seed=seed))
    state = copy.deepcopy(agent.state_dict())  # as a checkpoint holds it: no live tensors
    assert set(state["critic_method"]) == {"generator", "calls", "previous"}
    torch.manual_seed(1)
    resumed = MultiTaskSAC(OBS, A, T, config)
    resumed.load_state_dict(state)
    assert resumed.critic_step.calls == 2
    for seed in range(2, 5):
        torch.manual_seed(seed)
        agent.update(_batch(seed=seed))
        torch.manual_seed(seed)
        resumed.update(_batch(seed=seed))
    assert torch.equal(resumed.critic_step.previous, agent.critic_step.previous)
    for a, b in zip(agent.critic.parameters(), resumed.critic.parameters(), strict=True):
        assert torch.equal(a, b)
