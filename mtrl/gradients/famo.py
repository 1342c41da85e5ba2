"""FAMO (Liu, Liang, Chen & Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023).

O(1) per step, no per-task gradients: logits xi, z = softmax(xi), and the step along
grad sum_i z_i log L_i / c with c = sum_i z_i / L_i, i.e. task weights w_i = (z_i / L_i) / c,
which sum to 1 (the mean's scale). After the step the losses are re-evaluated on the same batch
and xi takes one step on the softmax's Jacobian times delta_i = log L_i(before) - log L_i(after),
so a task whose loss fell fastest loses weight. As in the authors' code, that step is Adam's
(``lr`` 0.025, ``decay`` = weight decay 0.001) and the losses are shifted by ``min_loss`` and 1e-8.
FAMO needs positive losses, the critic's: on SAC's signed actor loss it uses |L_i| (as the loss
weightings do, ``weighting.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import LossWeighting, StepContext

SHIFT = 1e-8


class FAMO(LossWeighting):
    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        lr: float = 0.025,
        decay: float = 0.001,
        min_loss: float = 0.0,
    ) -> None:
        if lr <= 0 or decay < 0:
            raise ValueError(f"famo: need lr > 0 and decay >= 0, got lr={lr}, decay={decay}")
        super().__init__(num_tasks, seed)
        self.min_loss = min_loss
        self.logits = torch.zeros(num_tasks, requires_grad=True)  # xi
        self.optimizer = torch.optim.Adam([self.logits], lr=lr, weight_decay=decay)
        self.before: torch.Tensor | None = None  # the shifted losses the last step was taken on

    def _shifted(self, task_losses: torch.Tensor) -> torch.Tensor:
        return (task_losses.detach().abs().double().cpu() - self.min_loss).clamp_min(0) + SHIFT

    def weights(self, task_losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        self.before = self._shifted(task_losses)
        ratio = torch.softmax(self.logits.detach().double(), 0) / self.before  # z_i / L_i
        return (ratio / ratio.sum()).to(task_losses)

    def after_step(self, task_losses: torch.Tensor) -> None:
        if self.before is None:
            return
        delta = self.before.log() - self._shifted(task_losses).log()  # [T]
        with torch.enable_grad():
            z = torch.softmax(self.logits, 0)
            (gradient,) = torch.autograd.grad(z, self.logits, grad_outputs=delta.float())
        self.optimizer.zero_grad(set_to_none=True)
        self.logits.grad = gradient
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "logits": self.logits.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "before": self.before,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.logits.copy_(state["logits"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.before = state["before"]
