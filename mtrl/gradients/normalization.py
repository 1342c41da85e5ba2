"""The three normalisations of the MTL survey (Vandenhende et al. / Crawshaw 2020, Sec. 3):
divide each task's loss by a scale so that no task dominates by units alone.

- ``initial_loss``: w_i = 1 / L_i(0), L_i(0) taken at the first update and kept.
- ``realtime_loss``: w_i = 1 / sg(L_i(t)): every task contributes a unit loss, gradients keep flowing.
- ``gradnorm_normalization``: w_i = 1 / sg(||grad_theta L_i||): every task contributes a unit-norm
  gradient (scale invariant); needs the per-task gradients.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.weighting import TINY, LossScaleWeighting


class InitialLossNormalization(LossScaleWeighting):
    def __init__(self, num_tasks: int, seed: int = 0, normalize: bool = True) -> None:
        super().__init__(num_tasks, seed, normalize)
        self.initial: torch.Tensor | None = None

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        if self.initial is None:
            self.initial = loss_scale.clone()
        return 1.0 / self.initial

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "initial": self.initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.initial = state["initial"]


class RealTimeLossNormalization(LossScaleWeighting):
    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        return 1.0 / loss_scale


class GradNormNormalization(GramWeighting):
    """sum_i g_i / ||g_i|| / T, renormalised (``normalize``) so the weights average 1."""

    def __init__(self, num_tasks: int, seed: int = 0, normalize: bool = True) -> None:
        super().__init__(num_tasks, seed)
        self.normalize = normalize

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        weights = 1.0 / gram_matrix.diagonal().clamp_min(0.0).sqrt().clamp_min(TINY)  # 1/||g_i||
        if self.normalize:
            weights = weights * (self.num_tasks / weights.sum())
        return weights / self.num_tasks
