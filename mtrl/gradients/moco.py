"""MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias in
Multi-objective Learning: A Provably Convergent Approach", ICLR 2023, Alg. 1).

MGDA's weights computed on stochastic gradients are biased; MoCo tracks each task's gradient with
a moving average and solves on the tracked ones:

    y_i <- y_i - beta_t (y_i - g_i),                                  beta_t = beta / t^beta_sigma
    lambda <- Pi_simplex(lambda - gamma_t (Y Y^T + rho I) lambda),    gamma_t = gamma / t^gamma_sigma
    step = sum_i lambda_i y_i.

The step is a combination of the *tracked* gradients, sums over past updates taken at other
parameters, so no weights of this update's task gradients describe it, and Y Y^T needs the past
gradients themselves, not their Gram matrices: MoCo keeps Y [T, P] block by block (``tracking.py``),
computes Y Y^T as the engine computes G, and reuses MoDo's projected step on lambda (``modo.py``).
As the paper (and not LibMTL, which uses a softmax), lambda stays on the simplex, so the step has
the mean's scale. Y starts at the first update's gradients (the paper leaves y_0 free; LibMTL's
zero start makes the first steps beta_t-fold too short); the paper's projection of y onto a
bounded set is left out, as in LibMTL. ``loss_scaled`` tracks g_i / ||g_i|| * L_i instead of g_i,
as the authors' and LibMTL's code does (|L_i|). Defaults are LibMTL's: beta 0.5, beta_sigma 0.5,
gamma 0.1, gamma_sigma 0.5, rho 0.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import BlockAggregator, StepContext
from mtrl.gradients.block_state import cloned, on_blocks, state_dtype
from mtrl.gradients.gram import EPS, gram
from mtrl.gradients.modo import modo_step


class MoCo(BlockAggregator):
    """MoCo's step sum_i lambda_i y_i on tracked gradients (Fernando et al. 2023, Alg. 1)."""

    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        beta: float = 0.5,
        beta_sigma: float = 0.5,
        gamma: float = 0.1,
        gamma_sigma: float = 0.5,
        rho: float = 0.0,
        loss_scaled: bool = False,
    ) -> None:
        if not 0 < beta <= 1 or gamma <= 0 or beta_sigma < 0 or gamma_sigma < 0 or rho < 0:
            raise ValueError(
                "moco: need 0 < beta <= 1, gamma > 0 and beta_sigma, gamma_sigma, rho >= 0, got "
                f"beta={beta}, gamma={gamma}, beta_sigma={beta_sigma}, "
                f"gamma_sigma={gamma_sigma}, rho={rho}"
            )
        super().__init__(num_tasks, seed)
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma = (
            beta,
            beta_sigma,
            gamma,
            gamma_sigma,
        )
        self.rho, self.loss_scaled = rho, loss_scaled
        self.lambd = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        self.tracked: list[torch.Tensor] | None = None  # Y, [T, P_n] per shared parameter
        self.steps = 0

    def combine_blocks(
        self,
        blocks: list[torch.Tensor],
        gram_matrix: torch.Tensor,
        task_losses: torch.Tensor,
        context: StepContext,
    ) -> list[torch.Tensor]:
        self.steps += 1
        if self.loss_scaled:  # g_i / ||g_i|| * |L_i|, ||g_i|| from G's diagonal
            norms = gram_matrix.diagonal().clamp_min(EPS).sqrt()
            factor = (task_losses.detach().abs().to(norms) / norms)[:, None]
            blocks = [block * factor.to(block) for block in blocks]
        tracked = on_blocks(self.tracked, blocks, "moco")
        if tracked is None:
            tracked = [block.to(state_dtype(block)).clone() for block in blocks]
        else:
            rate = self.beta / self.steps**self.beta_sigma
            for y, block in zip(tracked, blocks, strict=True):
                y.lerp_(block.to(y.dtype), rate)  # y - rate (y - g)
        self.tracked = tracked
        tracked_gram = torch.stack([gram(y) for y in tracked]).sum(0).cpu()
        rate = self.gamma / self.steps**self.gamma_sigma
        self.lambd = modo_step(self.lambd, tracked_gram, rate, self.rho)
        lambd = self.lambd.to(blocks[0].device)
        combined = [
            (lambd.to(y.dtype) @ y).to(b.dtype) for y, b in zip(tracked, blocks, strict=True)
        ]
        return combined

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "lambda": self.lambd.clone(),
            "tracked": cloned(self.tracked),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lambd = state["lambda"].clone()
        self.tracked = cloned(state["tracked"])
        self.steps = int(state["steps"])
