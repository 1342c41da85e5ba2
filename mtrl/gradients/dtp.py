"""Dynamic Task Prioritization (Guo et al., ECCV 2018, Eq. 5): a focal weight on a per-task KPI,
w_i = -(1 - k_i)^gamma log(k_i), with k_i an exponential moving average (rate ``beta``) of the KPI,
so tasks that are far from solved weigh more. In RL the KPI is the task's training success rate:
the trainer reports each finished episode's success through ``observe``. Until a task has a KPI
it weighs as much as the hardest possible task (k = ``floor``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mtrl.gradients.weighting import LossScaleWeighting


class DynamicTaskPrioritization(LossScaleWeighting):
    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        gamma: float = 2.0,
        beta: float = 0.1,
        floor: float = 0.01,
        normalize: bool = True,
    ) -> None:
        if gamma < 0 or not 0 < beta <= 1 or not 0 < floor < 1:
            raise ValueError("dtp: need gamma >= 0, beta in (0, 1], floor in (0, 1)")
        super().__init__(num_tasks, seed, normalize)
        self.gamma, self.beta, self.floor = gamma, beta, floor
        self.kpi = torch.full((num_tasks,), floor, dtype=torch.float64)  # smoothed k_i

    def observe(self, task_index: torch.Tensor, success: torch.Tensor) -> None:
        """New KPI values (success in [0, 1]) for the given tasks: [n], [n]."""
        for i, v in zip(task_index.tolist(), success.double().tolist(), strict=True):
            self.kpi[i] = self.beta * v + (1 - self.beta) * self.kpi[i]

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        kpi = self.kpi.clamp(self.floor, 1 - 1e-6)
        weights = -((1 - kpi) ** self.gamma) * torch.log(kpi)
        if weights.sum() <= 0:  # every task solved: fall back to equal weights
            weights = torch.ones_like(weights)
        return weights.clamp_min(math.ulp(1.0)).to(loss_scale)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "kpi": self.kpi.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.kpi = state["kpi"].clone()
