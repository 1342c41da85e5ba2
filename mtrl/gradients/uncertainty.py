"""Uncertainty weighting (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses", CVPR 2018, Eq. 7, regression form): learnable s_i = log sigma_i^2 and the loss
sum_i 1/2 exp(-s_i) L_i + 1/2 s_i, trained jointly. The model's step is the weighted mean with
w_i = exp(-s_i); s takes one Adam step per update on d/ds_i = (1 - exp(-s_i) |L_i|) / 2, which drives
exp(-s_i) toward 1 / |L_i| (noisier tasks weigh less). Unnormalised by default, as in the paper.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.weighting import LossScaleWeighting


class UncertaintyWeighting(LossScaleWeighting):
    def __init__(
        self, num_tasks: int, seed: int = 0, lr: float = 3e-4, normalize: bool = False
    ) -> None:
        super().__init__(num_tasks, seed, normalize)
        self.log_variance = torch.zeros(num_tasks, requires_grad=True)  # s_i
        self.optimizer = torch.optim.Adam([self.log_variance], lr=lr)

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        log_variance = self.log_variance
        weights = torch.exp(-log_variance.detach()).to(loss_scale.device)
        objective = (0.5 * torch.exp(-log_variance) * loss_scale.cpu() + 0.5 * log_variance).sum()
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        return weights

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "log_variance": self.log_variance.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_variance.copy_(state["log_variance"])
        self.optimizer.load_state_dict(state["optimizer"])
