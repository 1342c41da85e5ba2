"""GradNorm (Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
Multitask Networks", ICML 2018, Alg. 1), as published.

Task weights w (init 1). On the last shared layer W: G_i = ||grad_W w_i L_i|| = w_i ||grad_W L_i||,
G_bar = mean_i G_i, inverse training rates r_i = L~_i / mean_j L~_j with L~_i = L_i(t) / L_i(0), and
L_grad = sum_i |G_i - sg(G_bar r_i^alpha)|. The model steps on sum_i w_i g_i / T with the current
weights; then w takes one step of its own optimiser on grad_w L_grad and is renormalised to sum T.

Unlike facebookresearch/mtrl's version, L_i(0) is recorded once, at the first update, and kept,
and the weights are renormalised after every step (the paper's Alg. 1). Loss magnitudes |L_i| are
used (SAC's actor loss is negative; see ``weighting.py``). ``norms="all"`` measures G_i on every
shared parameter instead of the last layer.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from mtrl.gradients.base import GramWeighting, StepContext
from mtrl.gradients.weighting import TINY

NORM_SCOPES = ("last_shared", "all")


def last_layer_gram(context: StepContext) -> torch.Tensor | None:
    """The Gram matrix [T, T] of the last shared layer's weights, the last layer of every member of
    an ensemble (the twin critics) together; None where no shared parameter is a weight."""
    weights = [k for k, name in enumerate(context.names) if name.endswith("weight")]
    if not weights:
        return None
    member_free = [re.sub(r"^members\.\d+\.", "", name) for name in context.names]
    last = member_free[weights[-1]]
    return torch.stack([context.grams[k] for k in weights if member_free[k] == last]).sum(0)


class GradNorm(GramWeighting):
    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        alpha: float = 1.5,
        lr: float = 0.025,
        norms: str = "last_shared",
    ) -> None:
        if norms not in NORM_SCOPES:
            raise ValueError(f"gradnorm: norms must be one of {', '.join(NORM_SCOPES)}")
        if alpha < 0 or lr <= 0:
            raise ValueError("gradnorm: need alpha >= 0 and lr > 0")
        super().__init__(num_tasks, seed)
        self.alpha, self.norms = alpha, norms
        self.weights_param = torch.ones(num_tasks, requires_grad=True)  # w, sum T
        self.optimizer = torch.optim.Adam([self.weights_param], lr=lr)
        self.initial_losses: torch.Tensor | None = None

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        layer_gram = last_layer_gram(context) if self.norms == "last_shared" else None
        if layer_gram is None:  # norms="all", or no weight matrix among the shared parameters
            layer_gram = gram_matrix
        losses = task_losses.detach().abs().clamp_min(TINY).cpu().float()  # [T]
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        current = self.weights_param.detach().clone()  # the weights of this step

        layer_norms = layer_gram.diagonal().clamp_min(0.0).sqrt().cpu().float()  # ||grad_W L_i||
        norms = self.weights_param * layer_norms  # G_i, differentiable in w
        relative = losses / self.initial_losses  # L~_i
        rates = relative / relative.mean()  # r_i
        target = (norms.mean() * rates.pow(self.alpha)).detach()
        objective = (norms - target).abs().sum()  # L_grad
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        with torch.no_grad():  # Alg. 1: renormalise so that sum_i w_i = T
            self.weights_param.clamp_(min=TINY)
            self.weights_param.mul_(self.num_tasks / self.weights_param.sum())
        return (current / self.num_tasks).to(gram_matrix)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "weights": self.weights_param.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "initial_losses": self.initial_losses,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.weights_param.copy_(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.initial_losses = state["initial_losses"]
