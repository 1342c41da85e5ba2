"""The PCGrad paper's multi-task curvature (Def. 3) and Theorem 2's pair conditions, against closed
forms, and logged for both roles on diagnostic updates whatever the method."""

from __future__ import annotations

import math

import pytest
import torch
from test_sac import _agent, _batch

from mtrl.gradients.curvature import multitask_curvature
from mtrl.gradients.diagnostics import curvature_diagnostics
from mtrl.gradients.gram import gram


def _split(theta: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"w": theta[:3].reshape(3), "b": theta[3:]}


def _flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([params["w"], params["b"]])


def test_on_a_quadratic_the_curvature_is_the_rayleigh_quotient_of_its_hessian():
    generator = torch.Generator().manual_seed(0)
    root = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    hessian = root @ root.T + 0.1 * torch.eye(5, dtype=torch.float64)  # the known A
    linear = torch.randn(5, generator=generator, dtype=torch.float64)

    def loss(params):
        theta = _flat(params)
        return 0.5 * theta @ hessian @ theta + linear @ theta

    before = _split(torch.randn(5, generator=generator, dtype=torch.float64))
    after = _split(torch.randn(5, generator=generator, dtype=torch.float64))
    g = hessian @ _flat(before) + linear
    expected = g @ hessian @ g / (g @ g)
    assert multitask_curvature(loss, before, after).item() == pytest.approx(expected.item(), 1e-10)


def test_along_a_segment_the_quadrature_integrates_a_varying_hessian_exactly():
    """L = sum theta^4: g^T H(theta0 + a d) g = sum 12 g^2 (theta0 + a d)^2, a quadratic in a,
    which 3-point Gauss-Legendre integrates exactly: sum 12 g^2 (theta0^2 + theta0 d + d^2 / 3)."""
    generator = torch.Generator().manual_seed(1)
    theta0 = torch.randn(5, generator=generator, dtype=torch.float64)
    step = torch.randn(5, generator=generator, dtype=torch.float64)

    def loss(params):
        return _flat(params).pow(4).sum()

    g = 4 * theta0.pow(3)
    integral = (12 * g.pow(2) * (theta0.pow(2) + theta0 * step + step.pow(2) / 3)).sum()
    measured = multitask_curvature(loss, _split(theta0), _split(theta0 + step))
    assert measured.item() == pytest.approx((integral / (g @ g)).item(), rel=1e-10)


def test_theorem_2_pair_conditions_on_a_hand_computed_pair():
    """g1 = (1, 0), g2 = (-2, 0.5): cos = -2 / sqrt(4.25), Phi = 2 sqrt(4.25) / 5.25, so (a)
    holds; xi = (1 - cos^2) ||g1 - g2||^2 / ||g1 + g2||^2 = (0.25 / 4.25) * 9.25 / 1.25."""
    J = torch.tensor([[1.0, 0.0], [-2.0, 0.5]], dtype=torch.float64)
    cosine, similarity = -2 / math.sqrt(4.25), 2 * math.sqrt(4.25) / 5.25
    assert cosine <= -similarity
    xi = (1 - cosine**2) * 9.25 / 1.25
    below = curvature_diagnostics(gram(J), torch.tensor(xi * 0.99, dtype=torch.float64))
    above = curvature_diagnostics(gram(J), torch.tensor(xi * 1.01, dtype=torch.float64))
    assert below["gradients/curvature_bound_mean"].item() == pytest.approx(xi, rel=1e-6)
    assert below["gradients/curvature_bound_max"].item() == pytest.approx(xi, rel=1e-6)
    assert below["gradients/thm2_fraction_a"] == 1 and above["gradients/thm2_fraction_a"] == 1
    assert below["gradients/thm2_fraction_ab"] == 0 and above["gradients/thm2_fraction_ab"] == 1
    aligned = curvature_diagnostics(gram(J.abs()), torch.tensor(1e9, dtype=torch.float64))
    assert aligned["gradients/thm2_fraction_a"] == 0 and aligned["gradients/thm2_fraction_ab"] == 0


@pytest.mark.parametrize("method", ["mean", "pcgrad", "dwa"])
def test_every_diagnostic_update_logs_curvature_for_both_roles(method):
    agent = _agent(critic_grad=method, actor_grad=method, diagnostics_every=2, compile=False)
    quiet = agent.update(_batch(seed=0))
    assert not any("curvature" in key for key in quiet)  # only every diagnostics_every updates
    metrics = agent.update(_batch(seed=1))
    for role in ("critic", "actor"):
        for key in ("curvature", "curvature_bound_mean", "curvature_bound_max"):
            assert torch.isfinite(metrics[f"gradients/{role}/{key}"]), (role, key)
        for key in ("thm2_fraction_a", "thm2_fraction_ab"):
            assert 0 <= metrics[f"gradients/{role}/{key}"] <= 1
        assert (
            metrics[f"gradients/{role}/thm2_fraction_ab"]
            <= metrics[f"gradients/{role}/thm2_fraction_a"]
        )
