"""What the loss-scale weightings share: weights renormalised to mean 1, on loss magnitudes.

A weighting's step is sum_i w_i g_i / T, the gradient of the weighted mean loss (a ``LossWeighting``,
so the engine takes it in one backward pass, no per-task gradients). Two conventions, both
documented options:
- weights are renormalised to mean 1 (``normalize=True``): the step keeps the mean's scale, which
  Adam nearly ignores but gradient clipping and learning-rate comparisons do not;
- loss scales use |L_i|: SAC's actor loss (alpha log pi - Q) is negative and shifts with Q, so a
  ratio of raw losses is meaningless there. These methods are meant for the critic
  (``agent.critic_grad=dwa agent.actor_grad=mean``); on the actor they weight by |L_i|.
"""

from __future__ import annotations

import torch

from mtrl.gradients.base import LossWeighting, StepContext

TINY = 1e-8


class LossScaleWeighting(LossWeighting):
    """w = loss_weights(L) / T, the mean-1 weights of ``raw_weights`` on |L_i|."""

    def __init__(self, num_tasks: int, seed: int = 0, normalize: bool = True) -> None:
        super().__init__(num_tasks, seed)
        self.normalize = normalize

    def weights(self, task_losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        return self.loss_weights(task_losses) * (1.0 / self.num_tasks)

    def loss_weights(self, task_losses: torch.Tensor) -> torch.Tensor:
        weights = self.raw_weights(task_losses.detach().abs().clamp_min(TINY)).to(task_losses)
        if self.normalize:
            weights = weights * (self.num_tasks / weights.sum().clamp_min(TINY))
        return weights

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        """|L_i| [T] (detached, > 0) -> unnormalised weights [T]."""
        raise NotImplementedError
