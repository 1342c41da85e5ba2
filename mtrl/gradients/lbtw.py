"""Loss-Balanced Task Weighting (Liu, Liang & Gitter, AAAI 2019, Eq. 2):
w_i(t) = (L_i(t) / L_i(0))^alpha with the weights detached, so tasks whose loss has dropped the
least weigh the most. L_i(0) is taken at the first update and kept; alpha in (0, 1].
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.weighting import LossScaleWeighting


class LossBalancedTaskWeighting(LossScaleWeighting):
    def __init__(
        self, num_tasks: int, seed: int = 0, alpha: float = 0.5, normalize: bool = True
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"lbtw: alpha must be in (0, 1], got {alpha}")
        super().__init__(num_tasks, seed, normalize)
        self.alpha = alpha
        self.initial: torch.Tensor | None = None

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        if self.initial is None:
            self.initial = loss_scale.clone()
        return (loss_scale / self.initial.to(loss_scale)).pow(self.alpha)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "initial": self.initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.initial = state["initial"]
