"""What every gradient method shares: the task count, a seeded generator, and (empty) state."""

from __future__ import annotations

from typing import Any

import torch


class GradientMethod:
    """Combines per-task gradients of the shared parameters into one gradient.

    ``needs_task_grads`` is False for methods whose result is the gradient of a (weighted) mean loss:
    the agent then skips the per-task vmap pass and does a single backward of that loss.
    """

    needs_task_grads: bool = True
    # Whether the implied per-task weights are worth logging (weightings, PCGrad's implied weights).
    reports_weights: bool = True

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        self.num_tasks = num_tasks
        self.generator = torch.Generator().manual_seed(seed)

    def combine(self, task_grads: torch.Tensor, task_losses: torch.Tensor) -> torch.Tensor:
        """task_grads [T, P], task_losses [T] -> [P] on the scale of task_grads.mean(0).

        The default is the weighted mean of the loss-weighting methods.
        """
        weights = self.loss_weights(task_losses)  # [T]
        return (weights.to(task_grads.dtype).unsqueeze(1) * task_grads).mean(0)

    def loss_weights(self, task_losses: torch.Tensor) -> torch.Tensor:
        """Per-task weights [T] (mean 1) for methods that only re-weight the mean loss."""
        return torch.ones_like(task_losses)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
