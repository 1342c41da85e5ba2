"""Plain multi-task SAC: the gradient of the mean of the task losses."""

from __future__ import annotations

import torch

from mtrl.gradients.base import GradientMethod


class Mean(GradientMethod):
    """g = (1/T) sum_i g_i. Equal to one backward pass of the mean loss, which is what the agent runs."""

    needs_task_grads = False
    reports_weights = False

    def combine(self, task_grads: torch.Tensor, task_losses: torch.Tensor) -> torch.Tensor:
        return task_grads.mean(dim=0)  # [P]

    def weights(self, gram_matrix, task_losses, layer_gram=None) -> torch.Tensor:
        return torch.full_like(gram_matrix[0], 1.0 / self.num_tasks)
