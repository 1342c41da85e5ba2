"""STCH (Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth Tchebycheff Scalarization for Multi-Objective
Optimization", ICML 2024): a loss weighting, one backward pass.

The smooth Tchebycheff scalarisation g_mu(x) = mu log sum_i exp(lambda_i (f_i(x) - z*_i) / mu), a
smooth stand-in for max_i lambda_i (f_i - z*_i), has the gradient sum_i softmax_i(...) lambda_i
grad f_i. For multi-task learning the authors' code (and LibMTL's) takes f_i = log(L_i / n_i), the
log of the loss over a nadir point n_i (the task's mean loss over a warm-up), with z* = 0 and
lambda_i = 1, so grad f_i = grad L_i / L_i and the task weights are

    w_i  proportional to  softmax_i(log(L_i / n_i) / mu) / L_i.

During the warm-up the step is that of sum_i log L_i (w_i proportional to 1 / L_i) while the nadir
point is averaged. Options: ``mu = 1`` (LibMTL's default), ``warmup = 100`` updates (ours: LibMTL's
warm-up is 4 epochs, which RL does not have; 0 takes n_i = 1). As for the other loss weightings
(``weighting.py``), L_i is |L_i| and the weights are renormalised to mean 1 (``normalize``), so
the step has the mean's scale.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.weighting import LossScaleWeighting


class STCH(LossScaleWeighting):
    """Weights softmax(log(L / nadir) / mu) / L after a warm-up of 1 / L (Lin et al. 2024)."""

    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        mu: float = 1.0,
        warmup: int = 100,
        normalize: bool = True,
    ) -> None:
        if mu <= 0 or warmup < 0:
            raise ValueError(f"stch: need mu > 0 and warmup >= 0, got mu={mu}, warmup={warmup}")
        super().__init__(num_tasks, seed, normalize)
        self.mu, self.warmup = mu, warmup
        self.steps = 0
        self.loss_sum = torch.zeros(num_tasks, dtype=torch.float64)  # over the warm-up

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        losses = loss_scale.detach().double().cpu()
        self.steps += 1
        if self.steps <= self.warmup:  # the gradient of sum_i log L_i
            self.loss_sum += losses
            return (1.0 / losses).to(loss_scale)
        nadir = self.loss_sum / self.warmup if self.warmup else torch.ones_like(losses)
        smooth_max = torch.softmax(torch.log(losses / nadir) / self.mu, 0)
        return (smooth_max / losses).to(loss_scale)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "steps": self.steps, "loss_sum": self.loss_sum.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = int(state["steps"])
        self.loss_sum = state["loss_sum"].clone()
