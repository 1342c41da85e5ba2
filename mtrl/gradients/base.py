"""What every gradient method shares: the task count, a seeded generator, and (empty) state."""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.gram import apply_weights, gram


class GradientMethod:
    """Combines per-task gradients of the shared parameters into one gradient.

    ``needs_task_grads`` is False for methods whose result is the gradient of a (weighted) mean loss:
    the agent then skips the per-task vmap pass and does a single backward of that loss.
    """

    needs_task_grads: bool = True
    # Whether ``loss_weights`` is the same every step (the mean): the agent may then differentiate
    # the mean loss in a compiled pass instead of re-weighting the losses it has just computed.
    constant_loss_weights: bool = True
    # Whether the implied per-task weights are worth logging (weightings, PCGrad's implied weights).
    reports_weights: bool = True

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        self.num_tasks = num_tasks
        self.generator = torch.Generator().manual_seed(seed)

    # Columns of the last shared layer in task_grads, for methods that measure norms there.
    last_layer: slice = slice(None)

    def combine(self, task_grads: torch.Tensor, task_losses: torch.Tensor) -> torch.Tensor:
        """task_grads [T, P], task_losses [T] -> [P] on the scale of task_grads.mean(0)."""
        gram_matrix = gram(task_grads)
        whole = self.last_layer == slice(None)
        layer_gram = gram_matrix if whole else gram(task_grads[:, self.last_layer])
        weights = self.weights(gram_matrix, task_losses, layer_gram)
        return apply_weights(weights, task_grads)

    def weights(
        self,
        gram_matrix: torch.Tensor,  # [T, T], float64
        task_losses: torch.Tensor,  # [T]
        layer_gram: torch.Tensor | None = None,  # [T, T] of the last shared layer
    ) -> torch.Tensor:
        """w [T] such that the combined gradient is sum_i w_i g_i.

        Every method here needs only inner products of task gradients, so the agent hands it the
        Gram matrix and applies w itself, parameter by parameter, without ever concatenating the
        task gradients into one [T, P] matrix. The default is the loss weighting's mean.
        """
        weights = self.loss_weights(task_losses).to(gram_matrix)
        return weights / self.num_tasks

    def loss_weights(self, task_losses: torch.Tensor) -> torch.Tensor:
        """Per-task weights [T] (mean 1) for methods that only re-weight the mean loss."""
        return torch.ones_like(task_losses)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
