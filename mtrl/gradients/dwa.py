"""Dynamic Weight Average (Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention",
CVPR 2019, Eq. 7): w_i(t) = T exp(r_i(t-1) / tau) / sum_j exp(r_j(t-1) / tau), with
r_i(t-1) = L_i(t-1) / L_i(t-2) the ratio of the task's mean loss over the last two windows.

The paper's windows are epochs; RL has none, so a window is ``window`` updates (an option). Weights
are 1 for the first two windows. They already sum to T, so ``normalize`` changes nothing here.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.weighting import LossScaleWeighting


class DynamicWeightAverage(LossScaleWeighting):
    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        temperature: float = 2.0,
        window: int = 100,
        normalize: bool = True,
    ) -> None:
        if temperature <= 0 or window < 1:
            raise ValueError("dwa: temperature must be > 0 and window >= 1")
        super().__init__(num_tasks, seed, normalize)
        self.temperature, self.window = temperature, window
        self.window_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.window_count = 0
        self.history: list[torch.Tensor] = []  # mean losses of the last two full windows
        self.window_weights = torch.ones(num_tasks, dtype=torch.float64)

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        weights = self.window_weights.clone()  # this window's weights, fixed by the previous two
        self.window_sum += loss_scale.detach().double().cpu()
        self.window_count += 1
        if self.window_count == self.window:
            self.history = [*self.history, self.window_sum / self.window][-2:]
            self.window_sum.zero_()
            self.window_count = 0
            if len(self.history) == 2:
                ratio = self.history[1] / self.history[0]
                self.window_weights = self.num_tasks * torch.softmax(ratio / self.temperature, 0)
        return weights.to(loss_scale)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "window_sum": self.window_sum.clone(),
            "window_count": self.window_count,
            "history": [h.clone() for h in self.history],
            "weights": self.window_weights.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.window_sum = state["window_sum"].clone()
        self.window_count = int(state["window_count"])
        self.history = [h.clone() for h in state["history"]]
        self.window_weights = state["weights"].clone()
