"""Distributional critic losses against their formulas: HL-Gauss histograms, C51 projection."""

from __future__ import annotations

import math

import pytest
import torch

from mtrl.agents.value_losses import (
    ValueSupport,
    categorical_projection,
    check_support,
    cross_entropy,
    expected_value,
    hl_gauss_probs,
)

F64 = torch.float64


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _hl_gauss_reference(y: float, v_min: float, v_max: float, bins: int) -> list[float]:
    """Farebrother et al.'s histogram, written out with math.erf in plain Python."""
    y = min(max(y, v_min), v_max)
    width = (v_max - v_min) / bins
    sigma = 0.75 * width
    edges = [v_min + k * width for k in range(bins + 1)]
    cdf = [_phi((e - y) / sigma) for e in edges]
    total = cdf[-1] - cdf[0]
    return [(cdf[k + 1] - cdf[k]) / total for k in range(bins)]


# ---------------------------------------------------------------- HL-Gauss


@pytest.mark.parametrize("y", [-10.0, -9.9, -3.3, 0.0, 0.123, 4.5, 9.95, 10.0])
def test_hl_gauss_matches_gaussian_cdf_differences(y):
    probs = hl_gauss_probs(torch.tensor(y, dtype=F64), -10.0, 10.0, 21)
    expected = torch.tensor(_hl_gauss_reference(y, -10.0, 10.0, 21), dtype=F64)
    assert probs.shape == (21,)
    torch.testing.assert_close(probs, expected, rtol=1e-9, atol=1e-12)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert (probs >= 0).all()


def test_hl_gauss_float32_sums_to_one_and_is_finite():
    y = torch.linspace(-30, 30, 241)  # well beyond the support at both ends
    probs = hl_gauss_probs(y, -10.0, 10.0, 101)
    assert torch.isfinite(probs).all() and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(241), atol=1e-5, rtol=0)


def test_hl_gauss_mean_recovers_interior_targets():
    bins, v_min, v_max = 51, -10.0, 10.0
    width = (v_max - v_min) / bins
    centres = torch.tensor([v_min + (k + 0.5) * width for k in range(bins)], dtype=F64)
    y = torch.linspace(-8, 8, 97, dtype=F64)  # >= 5 sigma from either edge
    mean = (hl_gauss_probs(y, v_min, v_max, bins) * centres).sum(-1)
    torch.testing.assert_close(mean, y, atol=1e-3 * width, rtol=0)


def test_hl_gauss_clips_targets_beyond_the_support():
    y = torch.tensor([-50.0, -10.0, 10.0, 1e6], dtype=F64)
    probs = hl_gauss_probs(y, -10.0, 10.0, 11)
    torch.testing.assert_close(probs[0], probs[1])
    torch.testing.assert_close(probs[3], probs[2])
    torch.testing.assert_close(
        probs[3], torch.tensor(_hl_gauss_reference(10, -10, 10, 11), dtype=F64)
    )
    assert probs[0].argmax() == 0 and probs[3].argmax() == 10


def test_hl_gauss_leading_dims_and_vmap():
    y = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0)) * 4
    probs = hl_gauss_probs(y, -5.0, 5.0, 7)
    assert probs.shape == (2, 3, 5, 7)
    for index in [(0, 0, 0), (1, 2, 4), (0, 1, 3)]:
        reference = _hl_gauss_reference(y[index].item(), -5.0, 5.0, 7)
        torch.testing.assert_close(probs[index], torch.tensor(reference), atol=1e-6, rtol=1e-5)
    vmapped = torch.func.vmap(lambda t: hl_gauss_probs(t, -5.0, 5.0, 7))(y)
    torch.testing.assert_close(vmapped, probs)


# ---------------------------------------------------------------- categorical projection

# 5 atoms on [-2, 2]: z = [-2, -1, 0, 1, 2], dz = 1, so b = Tz + 2.
ATOMS = dict(v_min=-2.0, v_max=2.0)
P = torch.tensor([0.1, 0.2, 0.3, 0.25, 0.15], dtype=F64)
GAMMA = 0.5
# r = 0.3, alpha logpi' = -0.2: Tz = 0.3 + 0.5 (z + 0.2) = [-0.6, -0.1, 0.4, 0.9, 1.4], every one
# between two atoms. b = [1.4, 1.9, 2.4, 2.9, 3.4]; atom k sends p_k (u - b) to l, p_k (b - l) to u:
#   atom 1 <- 0.1*0.6 + 0.2*0.1                   = 0.08
#   atom 2 <- 0.1*0.4 + 0.2*0.9 + 0.3*0.6 + 0.25*0.1 = 0.425
#   atom 3 <- 0.3*0.4 + 0.25*0.9 + 0.15*0.6       = 0.435
#   atom 4 <- 0.15*0.4                            = 0.06
NORMAL = [0.0, 0.08, 0.425, 0.435, 0.06]
# Terminal (discount 0): every atom lands on r = 0.3, b = 2.3: 0.7 to atom 2, 0.3 to atom 3.
TERMINAL = [0.0, 0.0, 0.7, 0.3, 0.0]


def _project(probs, reward, discount, entropy, **support):
    as_tensor = lambda x: torch.as_tensor(x, dtype=F64)  # noqa: E731
    support = support or ATOMS
    return categorical_projection(
        probs, as_tensor(reward), as_tensor(discount), as_tensor(entropy), **support
    )


def test_projection_normal_transition_between_atoms():
    out = _project(P, 0.3, GAMMA, -0.2)
    torch.testing.assert_close(out, torch.tensor(NORMAL, dtype=F64))
    # The projection preserves the mean: 0.1*-0.6 + 0.2*-0.1 + 0.3*0.4 + 0.25*0.9 + 0.15*1.4.
    z = torch.tensor([-2.0, -1, 0, 1, 2], dtype=F64)
    assert (out * z).sum().item() == pytest.approx(0.475, abs=1e-12)


def test_projection_terminal_truncated_and_normal_rows():
    # Rows: terminated; truncated by the time limit (not terminated); neither. The caller's
    # discount is gamma * (1 - terminated): a truncation still bootstraps.
    terminated = torch.tensor([1.0, 0.0, 0.0], dtype=F64)  # truncated would read [0, 1, 0]
    discount = GAMMA * (1 - terminated)  # the truncation flag plays no part
    out = _project(P.expand(3, 5), [0.3] * 3, discount, [-0.2] * 3)
    expected = torch.tensor([TERMINAL, NORMAL, NORMAL], dtype=F64)
    torch.testing.assert_close(out, expected)


def test_projection_atoms_landing_exactly_on_atoms():
    # r = 0, discount 1, no entropy: Tz = z, every b an integer (l == u): the identity.
    torch.testing.assert_close(_project(P, 0.0, 1.0, 0.0), P)
    # r = 1, discount 0.5: Tz = [0, 0.5, 1, 1.5, 2], b = [2, 2.5, 3, 3.5, 4]:
    #   atom 2 <- 0.1 + 0.2*0.5; atom 3 <- 0.2*0.5 + 0.3 + 0.25*0.5; atom 4 <- 0.25*0.5 + 0.15.
    out = _project(P, 1.0, 0.5, 0.0)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.2, 0.525, 0.275], dtype=F64))


def test_projection_clips_onto_the_end_atoms():
    out = _project(P.expand(2, 5), [5.0, -5.0], [GAMMA, GAMMA], [0.0, 0.0])
    torch.testing.assert_close(out, torch.tensor([[0, 0, 0, 0, 1.0], [1.0, 0, 0, 0, 0]], dtype=F64))
    # r = 1.5: Tz = [0.5, 1, 1.5, 2, 2.5 -> 2], b = [2.5, 3, 3.5, 4, 4]:
    #   atom 2 <- 0.05; atom 3 <- 0.05 + 0.2 + 0.15; atom 4 <- 0.15 + 0.25 + 0.15.
    # r = -1.5: Tz = [-2.5 -> -2, -2, -1.5, -1, -0.5], b = [0, 0, 0.5, 1, 1.5]:
    #   atom 0 <- 0.1 + 0.2 + 0.15; atom 1 <- 0.15 + 0.25 + 0.075; atom 2 <- 0.075.
    out = _project(P.expand(2, 5), [1.5, -1.5], [GAMMA, GAMMA], [0.0, 0.0])
    expected = torch.tensor([[0, 0, 0.05, 0.4, 0.55], [0.45, 0.475, 0.075, 0, 0]], dtype=F64)
    torch.testing.assert_close(out, expected)


def test_projection_of_a_nan_reward_is_nan_in_its_row_only():
    """Not an index error: the NaN stays in its row, so the loss is NaN and the update skipped."""
    out = _project(P.expand(2, 5), [float("nan"), 0.3], [GAMMA, GAMMA], [-0.2, -0.2])
    assert out[0].isnan().any()
    torch.testing.assert_close(out[1], torch.tensor(NORMAL, dtype=F64))


def _random_transitions(shape, m, seed, scale=3.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(*shape, m, generator=g, dtype=dtype) * 2, -1)
    reward = torch.randn(shape, generator=g, dtype=dtype) * scale
    discount = torch.rand(shape, generator=g, dtype=dtype)
    entropy = torch.randn(shape, generator=g, dtype=dtype)
    return probs, reward, discount, entropy


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_projection_conserves_mass(dtype):
    probs, reward, discount, entropy = _random_transitions((2, 3, 5), 51, 1, 20.0, dtype)
    out = categorical_projection(probs, reward, discount, entropy, -10.0, 10.0)
    assert out.shape == (2, 3, 5, 51) and (out >= 0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(2, 3, 5, dtype=dtype))


def test_projection_preserves_the_mean_without_clipping():
    probs, reward, discount, entropy = _random_transitions((4, 8), 101, 2)
    v_min, v_max = -100.0, 100.0  # wide enough that no atom leaves the support
    z = torch.linspace(v_min, v_max, 101, dtype=F64)
    out = categorical_projection(probs, reward, discount, entropy, v_min, v_max)
    expected = reward + discount * ((probs * z).sum(-1) - entropy)
    torch.testing.assert_close((out * z).sum(-1), expected, atol=1e-9, rtol=0)


def test_projection_under_vmap_matches_batched():
    probs, reward, discount, entropy = _random_transitions((3, 6), 11, 3)
    batched = categorical_projection(probs, reward, discount, entropy, -4.0, 4.0)
    project = lambda p, r, d, e: categorical_projection(p, r, d, e, -4.0, 4.0)  # noqa: E731
    torch.testing.assert_close(torch.func.vmap(project)(probs, reward, discount, entropy), batched)


@pytest.mark.slow  # ~15 s of compiling on one CPU thread
def test_losses_compile_without_graph_breaks_under_vmap():
    probs, reward, discount, entropy = _random_transitions((3, 6), 11, 4, dtype=torch.float32)

    def losses(p, r, d, e):
        target = categorical_projection(p, r, d, e, -4.0, 4.0)
        return cross_entropy(p.log(), target), hl_gauss_probs(r, -4.0, 4.0, 11)

    args = (probs, reward, discount, entropy)
    compiled = torch.compile(torch.func.vmap(losses), fullgraph=True)
    with torch._dynamo.config.patch(disable=False):  # conftest disables compiling by default
        got = compiled(*args)
    for a, b in zip(got, losses(*args), strict=True):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- readout and loss


def test_cross_entropy_of_one_hot_is_minus_log_softmax_and_grads_are_finite():
    logits = torch.tensor([[3.0, -1.0, 0.5, 80.0], [-200.0, 0.0, 1.0, 2.0]], requires_grad=True)
    target = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    loss = cross_entropy(logits, target)
    for row, k in [(0, 1), (1, 0)]:
        x = logits[row].tolist()
        top = max(x)
        log_softmax_k = x[k] - top - math.log(sum(math.exp(v - top) for v in x))
        assert loss[row].item() == pytest.approx(-log_softmax_k, rel=1e-5)
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # d CE / d logits = softmax - target.
    torch.testing.assert_close(logits.grad, torch.softmax(logits.detach(), -1) - target)


def test_expected_value_and_hl_gauss_loss_gradients():
    support = ValueSupport("hl_gauss", 4, 0.0, 4.0)
    values = support.values()
    logits = torch.tensor([0.0, math.log(3.0), 0.0, 0.0], requires_grad=True)  # probs 1/6, 1/2, ..
    q = expected_value(logits, values)
    assert q.item() == pytest.approx((0.5 + 3 * 1.5 + 2.5 + 3.5) / 6)
    target = hl_gauss_probs(torch.tensor(2.2), support.v_min, support.v_max, support.bins)
    (cross_entropy(logits, target) + q).backward()
    assert torch.isfinite(logits.grad).all()


def test_value_support_values():
    torch.testing.assert_close(
        ValueSupport("hl_gauss", 4, 0.0, 4.0).values(), torch.tensor([0.5, 1.5, 2.5, 3.5])
    )
    torch.testing.assert_close(
        ValueSupport("categorical", 5, -2.0, 2.0).values(dtype=F64),
        torch.tensor([-2.0, -1, 0, 1, 2], dtype=F64),
    )
    with pytest.raises(ValueError, match="mse"):
        ValueSupport("mse", 101, -10.0, 10.0).values()


@pytest.mark.parametrize(
    "args, match",
    [
        (("huber", 51, -1.0, 1.0), "agent.critic_loss"),
        (("hl_gauss", 1, -1.0, 1.0), "agent.bins"),
        (("hl_gauss", 2.5, -1.0, 1.0), "agent.bins"),
        (("categorical", True, -1.0, 1.0), "agent.bins"),
        (("categorical", 51, 1.0, 1.0), "agent.v_min"),
        (("categorical", 51, 2.0, -1.0), "agent.v_min"),
        (("hl_gauss", 51, float("nan"), 1.0), "agent.v_min"),
    ],
)
def test_check_support_errors(args, match):
    with pytest.raises(ValueError, match=match) as info:
        check_support(*args)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=match):
        ValueSupport(*args)


def test_check_support_accepts_valid_supports():
    for kind in ("mse", "hl_gauss", "categorical"):
        check_support(kind, 2, -1.0, 1.0)
        check_support(kind, 101, -10, 10)
