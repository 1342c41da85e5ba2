"""DB-MTL (Lin, Ye, Xu, Shi, Zhang & Kwok, "Dual-Balancing for Multi-Task Learning", 2023, Alg. 1).

Two balancings. Loss scale: each task descends log L_i, whose gradient is g_i / L_i. Gradient
magnitude: an EMA of those gradients, g^_i <- beta_t g^_i + (1 - beta_t) g_i / L_i with
beta_t = beta / t^beta_sigma, every one rescaled to the largest norm,

    alpha_i = max_j ||g^_j|| / ||g^_i||,        step = (1/T) sum_i alpha_i g^_i.

The paper and LibMTL sum the T rescaled terms; we divide by T (the mean's scale, each term having
the norm of the largest, so the step is max_j ||g^_j|| times the mean of the unit directions). The
EMA holds past gradients (taken at other parameters), so the step is no weighting of this update's
gradients: DB-MTL keeps g^ [T, P] block by block (``tracking.py``). It starts at the first update's
g_i / L_i (LibMTL's zero start makes the first step (1 - beta)-fold, 10x, too short). L_i is
|L_i| (SAC's actor loss is signed), plus 1e-8 as in LibMTL. Defaults are LibMTL's: beta 0.9,
beta_sigma 0.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import BlockAggregator, StepContext
from mtrl.gradients.block_state import cloned, on_blocks, state_dtype

LOSS_SHIFT = 1e-8  # LibMTL's, inside the log
NORM_FLOOR = 1e-8  # LibMTL's, under the norms alpha divides by


class DBMTL(BlockAggregator):
    """Log-loss gradients, EMA'd and rescaled to the largest norm (Lin et al. 2023, Alg. 1)."""

    def __init__(
        self, num_tasks: int, seed: int = 0, beta: float = 0.9, beta_sigma: float = 0.0
    ) -> None:
        if not 0 <= beta < 1 or beta_sigma < 0:
            raise ValueError(
                f"db_mtl: need 0 <= beta < 1 and beta_sigma >= 0, got beta={beta}, "
                f"beta_sigma={beta_sigma}"
            )
        super().__init__(num_tasks, seed)
        self.beta, self.beta_sigma = beta, beta_sigma
        self.averages: list[torch.Tensor] | None = None  # g^, [T, P_n] per shared parameter
        self.steps = 0

    def combine_blocks(
        self,
        blocks: list[torch.Tensor],
        gram_matrix: torch.Tensor,
        task_losses: torch.Tensor,
        context: StepContext,
    ) -> list[torch.Tensor]:
        self.steps += 1
        inverse = 1.0 / (task_losses.detach().abs().to(torch.float64) + LOSS_SHIFT)  # d log L / d L
        log_grads = [
            block.to(state_dtype(block)) * inverse[:, None].to(block.device, state_dtype(block))
            for block in blocks
        ]
        averages = on_blocks(self.averages, blocks, "db_mtl")
        if averages is None:
            averages = log_grads
        else:
            rate = self.beta / self.steps**self.beta_sigma
            for average, log_grad in zip(averages, log_grads, strict=True):
                average.lerp_(log_grad, 1.0 - rate)  # rate g^ + (1 - rate) g / L
        self.averages = averages
        norms = torch.stack([a.square().sum(1) for a in averages]).sum(0).sqrt()  # [T]
        alpha = norms.max() / (norms + NORM_FLOOR) / self.num_tasks
        combined = [(alpha @ a).to(b.dtype) for a, b in zip(averages, blocks, strict=True)]
        return combined

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "averages": cloned(self.averages), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.averages = cloned(state["averages"])
        self.steps = int(state["steps"])
