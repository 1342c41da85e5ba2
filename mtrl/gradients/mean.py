"""Plain multi-task SAC: the gradient of the mean of the task losses."""

from __future__ import annotations

import torch

from mtrl.gradients.base import LossWeighting, StepContext


class Mean(LossWeighting):
    """g = (1/T) sum_i g_i: w = 1/T, one backward pass of the mean loss (compiled, with
    ``agent.compile``: the engine's fast path is for this class)."""

    def weights(self, task_losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        return torch.ones_like(task_losses) * (1.0 / self.num_tasks)
