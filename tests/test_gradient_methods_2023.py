"""SDMGrad, MoDo, ExcessMTL, CR-MOGM, STCH, MoCo and DB-MTL: hand-worked cases of the papers'
equations (T = 2), their state through a checkpoint, and their refusals. The four torchjd also has
are compared with it step after step in test_torchjd_agreement.py; the registry-wide properties
are in test_gradient_properties.py."""

from __future__ import annotations

import math

import pytest
import torch

from mtrl import gradients
from mtrl.errors import ConfigError
from mtrl.gradients.base import StepContext
from mtrl.gradients.gram import gram
from mtrl.training.checkpoint import load_checkpoint, save_checkpoint

STATEFUL = ["sdmgrad", "modo", "excess_mtl", "cr_mogm", "stch", "moco", "db_mtl"]


def _loss_weights(method, losses) -> torch.Tensor:
    return method.weights(torch.tensor(losses, dtype=torch.float64), StepContext())


def test_stch_weighs_by_the_smooth_max_of_log_losses_over_the_nadir_point():
    method = gradients.make("stch", 2, mu=0.5, warmup=1)
    # Warm-up: the gradient of sum_i log L_i, w_i ~ 1 / L_i = [1, 1/4], renormalised to mean 1
    # ([1.6, 0.4]), over T; the nadir point is these losses, [1, 4].
    assert torch.allclose(
        _loss_weights(method, [1.0, 4.0]), torch.tensor([0.8, 0.2], dtype=torch.float64)
    )
    # Then w_i ~ softmax(log(L_i / n_i) / mu)_i / L_i: log(L / n) = [log 2, log 1/2], / 0.5 gives
    # exp = [4, 1/4], softmax [16/17, 1/17], / L = [8/17, 1/34] (sum 1/2): mean 1 is [32/17, 2/17].
    w = _loss_weights(method, [2.0, 2.0])
    assert torch.allclose(w, torch.tensor([16 / 17, 1 / 17], dtype=torch.float64), rtol=1e-12)


def test_stch_is_the_gradient_of_torchjds_smooth_tchebycheff_scalarisation():
    """torchjd's STCH with preferences 1 on f_i = log(L_i / n_i): d/dL_i is softmax_i / L_i."""
    scalarization = pytest.importorskip("torchjd.scalarization")
    method = gradients.make("stch", 3, mu=0.3, warmup=2)
    warmup = [[1.0, 2.0, 0.5], [3.0, 2.0, 0.5]]
    for losses in warmup:
        _loss_weights(method, losses)
    nadir = torch.tensor(warmup, dtype=torch.float64).mean(0)
    losses = torch.tensor([1.5, 0.7, 0.9], dtype=torch.float64, requires_grad=True)
    stch = scalarization.STCH(mu=0.3, weights=torch.ones(3, dtype=torch.float64))
    (gradient,) = torch.autograd.grad(stch(torch.log(losses / nadir)), losses)
    w = _loss_weights(method, losses.detach().tolist())
    assert torch.allclose(w, gradient / gradient.sum(), rtol=1e-12)


def test_db_mtl_balances_log_loss_gradients_to_the_largest_norm():
    method = gradients.make("db_mtl", 2)  # beta 0.9, beta_sigma 0
    J = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # Alg. 1 at t = 1: g^ = g / L = [[3, 0], [0, 2]] (L = [1, 1/2]); norms [3, 2], alpha = [1, 3/2];
    # the step (1/T) sum_i alpha_i g^_i = ([3, 0] + [0, 3]) / 2.
    step = method.combine(J, torch.tensor([1.0, 0.5], dtype=torch.float64))
    assert torch.allclose(step, torch.tensor([1.5, 1.5], dtype=torch.float64), rtol=1e-7)
    # t = 2, g = [[1, 0], [0, 1]], L = [1, 1]: g^ = 0.9 g^ + 0.1 g = [[2.8, 0], [0, 1.9]];
    # alpha = [1, 2.8 / 1.9]; the step ([2.8, 0] + [0, 2.8]) / 2.
    step = method.combine(torch.eye(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(step, torch.tensor([1.4, 1.4], dtype=torch.float64), rtol=1e-7)


def test_moco_tracks_the_gradients_and_steps_lambda_on_the_tracked_gram_matrix():
    method = gradients.make("moco", 2)  # beta 0.5, gamma 0.1, both / sqrt(t); rho 0
    # Alg. 1 at t = 1: Y = J = diag(1, 2), Y Y^T = diag(1, 4); lambda = Pi(1/2 - 0.1 [1/2, 2]) =
    # Pi([0.45, 0.3]) = [0.575, 0.425] (each + 0.125); the step Y^T lambda = [0.575, 0.85].
    step = method.combine(torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64)), None)
    assert torch.allclose(step, torch.tensor([0.575, 0.85], dtype=torch.float64), rtol=1e-12)
    # t = 2, g = [[3, 0], [0, 0]]: beta_2 = 0.5 / sqrt(2), y_1 = [1 + 2 beta_2, 0],
    # y_2 = [0, 2 - 2 beta_2]; gamma_2 = 0.1 / sqrt(2) on Y Y^T = diag(y_1^2, y_2^2).
    beta, gamma = 0.5 / math.sqrt(2), 0.1 / math.sqrt(2)
    y1, y2 = 1 + 2 * beta, 2 - 2 * beta
    lam = torch.tensor(
        [0.575 * (1 - gamma * y1**2), 0.425 * (1 - gamma * y2**2)], dtype=torch.float64
    )
    lam += (1 - lam.sum()) / 2  # both stay positive: the projection is the shift
    J = torch.tensor([[3.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    step = method.combine(J, None)
    assert torch.allclose(step, torch.stack([lam[0] * y1, lam[1] * y2]), rtol=1e-12)


def test_modo_and_sdmgrad_take_their_projected_steps():
    # MoDo (Eq. 2.9a) on G = diag(1, 4), gamma 0.1, rho 0.1: 1/2 - 0.1 [0.55, 2.05] = [0.445,
    # 0.295], projected: [0.575, 0.425].
    G = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    w = gradients.make("modo", 2).weights(G, None, StepContext())
    assert torch.allclose(w, torch.tensor([0.575, 0.425], dtype=torch.float64), rtol=1e-12)
    # SDMGrad, one iteration, lr 1, lam 1: G / (mean norm 1.5)^2 = diag(4/9, 16/9); its gradient
    # at w + lam / T = [1, 1] is [4/9, 16/9]; w = Pi([1/2 - 4/9, 1/2 - 16/9]) = [1, 0]; the
    # weights (w + 1/2) / 2 = [3/4, 1/4].
    method = gradients.make("sdmgrad", 2, lam=1.0, lr=1.0, iterations=1)
    w = method.weights(G, None, StepContext())
    assert torch.allclose(w, torch.tensor([0.75, 0.25], dtype=torch.float64), rtol=1e-6)


def test_excess_mtl_moves_weight_to_the_task_with_the_larger_relative_excess_risk():
    method = gradients.make("excess_mtl", 2)
    # t = 1: H = |g|, E = sum |g| = [1, 1] (g = [[1, 0], [0, 1]]) is the baseline and is used raw
    # (Eq. 9 from 1/2): the weights stay [1/2, 1/2].
    method.combine_blocks([torch.eye(2).double()], None, None, StepContext())
    w = method.task_weights  # a block aggregator: the weights it stepped with, kept
    assert torch.allclose(w, torch.full((2,), 0.5).double())
    # t = 2, g = [[2, 0], [0, 1]]: H = [sqrt 5, sqrt 2], E = [4 / sqrt 5, 1 / sqrt 2] over the
    # baseline; alpha ~ exp(E): task 0 gains weight.
    method.combine_blocks([torch.diag(torch.tensor([2.0, 1.0])).double()], None, None, None)
    w = method.task_weights
    risk = torch.tensor([4 / math.sqrt(5), 1 / math.sqrt(2)], dtype=torch.float64)
    assert torch.allclose(w, torch.softmax(risk, 0), rtol=1e-6)


def test_cr_mogm_averages_the_weights_of_its_base():
    base, method = gradients.make("mgda", 3), gradients.make("cr_mogm", 3, alpha=0.5)
    generator = torch.Generator().manual_seed(0)
    average = None
    for _ in range(4):
        G = gram(torch.randn(3, 8, generator=generator, dtype=torch.float64))
        current = base.weights(G, None, StepContext())
        average = current if average is None else 0.5 * average + 0.5 * current
        assert torch.allclose(method.weights(G, None, StepContext()), average, rtol=1e-12)


@pytest.mark.parametrize("spec", ["cr_mogm:base=dwa", "cr_mogm:base=graddrop", "cr_mogm:base=moco"])
def test_cr_mogm_refuses_a_base_that_is_no_gram_weighting(spec):
    with pytest.raises(ConfigError, match="base must weight the task gradients"):
        gradients.check_spec("agent.critic_grad", spec)


@pytest.mark.parametrize("name", ["excess_mtl", "moco", "db_mtl"])
def test_gradient_state_refuses_other_parameters(name):
    method = gradients.make(name, 2)
    losses = torch.ones(2, dtype=torch.float64)
    method.combine(torch.randn(2, 5, dtype=torch.float64), losses)
    with pytest.raises(ValueError, match="differ from those its state was made for"):
        method.combine(torch.randn(2, 6, dtype=torch.float64), losses)


@pytest.mark.parametrize("name", STATEFUL)
def test_state_round_trips_a_checkpoint(tmp_path, name):
    """Three steps, a checkpoint, then the same three more steps from the original and from the
    restored copy (across STCH's warm-up of 2, and with two parameter blocks)."""
    options = {"warmup": 2} if name == "stch" else {}
    method = gradients.make(name, 3, **options)
    generator = torch.Generator().manual_seed(1)
    layout = [("0.weight", 6), ("0.bias", 2)]

    def draw():
        J = torch.randn(3, 8, generator=generator, dtype=torch.float64)
        return J, torch.rand(3, generator=generator, dtype=torch.float64) + 0.1

    for _ in range(3):
        method.combine(*draw(), layout)
    save_checkpoint(tmp_path / "m.pt", {"method": method.state_dict()})
    restored = gradients.make(name, 3, **options)
    restored.load_state_dict(load_checkpoint(tmp_path / "m.pt")["method"])
    for _ in range(3):
        J, losses = draw()
        assert torch.equal(restored.combine(J, losses, layout), method.combine(J, losses, layout))


def test_sdmgrad_is_invariant_to_the_gradients_scale_and_modo_is_not():
    """SDMGrad divides G by the squared mean norm before its inner steps; MoDo's gamma acts on G
    itself, as the paper's (its docstring says so)."""
    J = torch.randn(4, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for name, invariant in (("sdmgrad", True), ("modo", False)):
        small, large = (gradients.make(name, 4).weights(gram(c * J), None, None) for c in (1, 30))
        assert torch.allclose(small, large, rtol=1e-6) == invariant, name


@pytest.mark.parametrize("name", ["stch", "db_mtl"])
def test_log_loss_methods_step_the_same_whatever_each_tasks_loss_scale(name):
    """Both descend log L_i: scaling task i's loss (so its gradient) by c_i changes nothing but,
    for STCH, the length (its weights are renormalised to mean 1, as every loss weighting's)."""
    generator = torch.Generator().manual_seed(4)
    scales = torch.tensor([1.0, 100.0, 0.01], dtype=torch.float64)
    plain, scaled = (
        gradients.make(name, 3, **({"warmup": 2} if name == "stch" else {})) for _ in "ab"
    )
    for _ in range(4):
        J = torch.randn(3, 7, generator=generator, dtype=torch.float64)
        losses = torch.rand(3, generator=generator, dtype=torch.float64) + 0.5
        d, d_scaled = plain.combine(J, losses), scaled.combine(J * scales[:, None], losses * scales)
        if name == "stch":
            d, d_scaled = d / d.norm(), d_scaled / d_scaled.norm()
        assert torch.allclose(d_scaled, d, rtol=1e-6)
