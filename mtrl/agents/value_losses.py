"""Distributional critic losses: the critic classifies its value on a fixed support.

Regressing Q with a squared TD error gives gradients that grow with the scale of the returns, and
in multi-task RL that scale differs by orders of magnitude across tasks, so the largest-return
tasks dominate the shared trunk. A cross-entropy against a target distribution on a fixed support
has gradients bounded by the probabilities whatever the return scale. Farebrother et al. (ICML
2024, "Stop Regressing: Training Value Functions via Classification for Scalable Deep RL") found
that HL-Gauss (a Gaussian histogram of the scalar target) beats regression across value-based deep
RL; Nauman et al. (2025, "Bigger, Regularized, Categorical", BRC) scale multi-task SAC with C51's
categorical TD (Bellemare et al. 2017, "A Distributional Perspective on Reinforcement Learning").

Both are pure functions of tensors with arbitrary leading dimensions: no branching on tensor
values, no in-place ops on inputs, so they run under torch.func.vmap and torch.compile.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("mse", "hl_gauss", "categorical")


def check_support(kind: str, bins: int, v_min: float, v_max: float) -> None:
    """Raise a one-line ValueError unless (kind, bins, v_min, v_max) describes a usable support.

    The support is checked whatever the kind (mse ignores it, but a bad value is still a mistake).
    """
    if kind not in KINDS:
        raise ValueError(f"agent.critic_loss: '{kind}' is not one of {', '.join(KINDS)}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise ValueError(f"agent.bins: expected an integer >= 2, got {bins!r}")
    if not float(v_min) < float(v_max):  # also rejects NaN
        raise ValueError(f"agent.v_min must be below agent.v_max, got {v_min!r} >= {v_max!r}")


@dataclass(frozen=True)
class ValueSupport:
    """The critic's output support: `bins` logits per critic, read as values on [v_min, v_max]."""

    kind: str
    bins: int
    v_min: float
    v_max: float

    def __post_init__(self) -> None:
        check_support(self.kind, self.bins, self.v_min, self.v_max)

    def values(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """[bins]: the bin centres (hl_gauss) or the atoms (categorical) that Q averages over."""
        if self.kind == "hl_gauss":
            edges = torch.linspace(
                self.v_min, self.v_max, self.bins + 1, device=device, dtype=dtype
            )
            return (edges[1:] + edges[:-1]) / 2
        if self.kind == "categorical":
            return torch.linspace(self.v_min, self.v_max, self.bins, device=device, dtype=dtype)
        raise ValueError("agent.critic_loss: 'mse' has a scalar critic, no support")


def hl_gauss_probs(target: torch.Tensor, v_min: float, v_max: float, bins: int) -> torch.Tensor:
    """[...] scalar targets -> [..., bins] HL-Gauss histograms (Farebrother et al. 2024, sec. 3).

    Bins have edges linspace(v_min, v_max, bins + 1); the target is N(y, sigma^2) with sigma = 0.75
    bin width (the paper's recommended ratio), integrated over each bin with the normal CDF and
    renormalised by its mass inside [v_min, v_max].
    """
    sigma = 0.75 * (v_max - v_min) / bins
    edges = torch.linspace(v_min, v_max, bins + 1, device=target.device, dtype=target.dtype)
    # Clip first: a target far outside the support would leave (almost) no Gaussian mass inside,
    # the renormaliser would be ~0 and the histogram 0/0. Clipped, it piles onto the end bin.
    y = target.clamp(v_min, v_max).unsqueeze(-1)
    cdf = torch.special.ndtr((edges - y) / sigma)  # [..., bins + 1]
    return (cdf[..., 1:] - cdf[..., :-1]) / (cdf[..., -1:] - cdf[..., :1])


def categorical_projection(
    next_probs: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    entropy: torch.Tensor,
    v_min: float,
    v_max: float,
) -> torch.Tensor:
    """C51's projected soft Bellman target, as BRC computes it: [..., m] probabilities.

    next_probs [..., m]: the target critic's probabilities on atoms linspace(v_min, v_max, m) (BRC
    averages the twin members' softmax, it does not take a min). reward, discount, entropy [...]:
    discount is gamma * (1 - terminated), so a time-limit truncation still bootstraps; entropy is
    alpha * log pi(a'|s'), subtracted from every atom. Each atom moves to
    r + discount * (z_k - entropy), is clipped to [v_min, v_max] (mass beyond piles onto the end
    atoms) and is split between its neighbours l = floor(b), u = ceil(b), b = (Tz - v_min) / dz, in
    proportion to closeness; an atom landing exactly on one (l == u) gives it all its mass (BRC adds
    (l == u) to the lower weight). scatter_add keeps it O(m) in memory and vmap/compile-friendly.
    """
    m = next_probs.shape[-1]
    dz = (v_max - v_min) / (m - 1)
    z = torch.linspace(v_min, v_max, m, device=next_probs.device, dtype=next_probs.dtype)
    shifted = reward.unsqueeze(-1) + discount.unsqueeze(-1) * (z - entropy.unsqueeze(-1))
    # Clamping b (not only Tz) keeps rounding from ever producing index m.
    b = ((shifted.clamp(v_min, v_max) - v_min) / dz).clamp(0, m - 1)
    lower, upper = b.floor(), b.ceil()
    to_lower = next_probs * (upper - b + (lower == upper).to(b.dtype))
    to_upper = next_probs * (b - lower)
    # A NaN target (a NaN reward) keeps its NaN weights, so the loss is NaN and the update is
    # skipped like the other losses' are; only its indices are made valid (NaN.long() is not).
    lower_index, upper_index = lower.nan_to_num(0.0).long(), upper.nan_to_num(0.0).long()
    out = torch.zeros_like(next_probs).scatter_add(-1, lower_index, to_lower)
    return out.scatter_add(-1, upper_index, to_upper)


def expected_value(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Q = sum_k softmax(logits)_k * values_k: [..., m], [m] -> [...] (both papers' readout)."""
    return (torch.softmax(logits, -1) * values).sum(-1)


def cross_entropy(logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """-sum_k probs_k * log_softmax(logits)_k: [..., m], [..., m] -> [...].

    The target probs are used as given: the caller builds them under no_grad (or detaches them),
    as both papers treat the target as a constant.
    """
    return -(probs * torch.log_softmax(logits, -1)).sum(-1)


class CriticReadout:
    """What the twin critics' outputs [2, ..., out] mean under ``agent.critic_loss``: their Q
    values, the actor's Q, the TD target and the per-sample loss, so that SAC reads the same for
    a regressed critic and a distributional one."""

    def __init__(self, support: ValueSupport, device: torch.device | str | None = None) -> None:
        self.support, self.kind = support, support.kind
        self.values = None if self.kind == "mse" else support.values(device)  # [bins]

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "mse" else self.support.bins

    def q(self, out: torch.Tensor) -> torch.Tensor:
        """[..., out] -> Q [...]: the output itself, or the logits' expectation."""
        return out.squeeze(-1) if self.values is None else expected_value(out, self.values)

    def actor_q(self, out: torch.Tensor) -> torch.Tensor:
        """The twins' [2, ...] outputs -> the Q the actor maximises [...]: their min (clipped
        double Q), or for the categorical critic their mean, as BRC takes it."""
        q = self.q(out)
        return q.mean(0) if self.kind == "categorical" else q.amin(0)

    def target(
        self,
        next_out: torch.Tensor,  # [2, ..., out]: the target critics at (s', a')
        reward: torch.Tensor,  # [...]
        discount: torch.Tensor,  # [...]: gamma * (1 - terminated)
        entropy: torch.Tensor,  # [...]: alpha * log pi(a' | s')
    ) -> torch.Tensor:
        """The soft TD target: a scalar [...] (mse, hl_gauss: min over the twins), or the
        projected distribution [..., bins] of the twins' mean distribution (categorical)."""
        if self.kind == "categorical":
            next_probs = next_out.softmax(-1).mean(0)
            return categorical_projection(
                next_probs, reward, discount, entropy, self.support.v_min, self.support.v_max
            )
        return reward + discount * (self.q(next_out).amin(0) - entropy)

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Each twin's per-sample loss [2, ...] against the one target of ``target()``."""
        if self.kind == "mse":
            return (self.q(out) - target).pow(2)
        if self.kind == "hl_gauss":
            s = self.support
            target = hl_gauss_probs(target, s.v_min, s.v_max, s.bins)
        return cross_entropy(out, target.unsqueeze(0))
