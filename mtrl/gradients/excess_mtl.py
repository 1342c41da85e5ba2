"""ExcessMTL (He, Lin, Zhang & Zhao, "Robust Multi-Task Learning with Excess Risks", ICML 2024).

Task weights on the simplex, moved towards the tasks with the largest excess risk (the distance to
their own optimum, not their loss, so label noise does not attract weight): the excess risk of task
i is estimated to second order as E_i = g_i^T H_i^(-1) g_i (Eq. 6-7), with H_i AdaGrad's diagonal
sqrt(sum over updates of g_i^2), divided by its value at the start (Sec. 3.2's scale processing),
and the weights take an exponentiated-gradient step alpha_i <- alpha_i exp(eta E_i) / Z (Eq. 9).
Start 1/T (the paper's and torchjd's; LibMTL starts at 1); the baseline is the first update's E
(``warmup = 0``: the authors', LibMTL's and torchjd's default) or, with ``warmup`` updates of
uniform weights, their mean E (the paper's App. C.1). ``robust_step_size`` eta = 1 (all three).

H_i is per coordinate, which G = J J^T does not hold: this method keeps [T, P] sums of squares,
block by block (``tracking.py``), and so is no Gram weighting; its step is still sum_i alpha_i g_i
(weights summing to 1, torchjd's ``ExcessMTLWeighting``'s scale).
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import BlockAggregator, StepContext
from mtrl.gradients.block_state import cloned, on_blocks, state_dtype

ADAGRAD_EPS = 1e-7  # the reference implementations' floors, in H and in the baseline's division


class ExcessMTL(BlockAggregator):
    """Exponentiated-gradient weights on AdaGrad excess-risk estimates (He et al. 2024, Eq. 6-9)."""

    def __init__(
        self, num_tasks: int, seed: int = 0, robust_step_size: float = 1.0, warmup: int = 0
    ) -> None:
        if robust_step_size <= 0 or warmup < 0:
            raise ValueError(
                "excess_mtl: need robust_step_size > 0 and warmup >= 0, got "
                f"robust_step_size={robust_step_size}, warmup={warmup}"
            )
        super().__init__(num_tasks, seed)
        self.robust_step_size, self.warmup = robust_step_size, warmup
        self.task_weights = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
        self.squared_sums: list[torch.Tensor] | None = None  # [T, P_n] per shared parameter
        self.baseline: torch.Tensor | None = None  # E at the start, [T]
        self.warmup_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.steps = 0

    def excess_risks(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """E_i = sum over coordinates of g^2 / sqrt(sum of g^2 so far + eps) (Eq. 6-7), [T] float64."""
        sums = on_blocks(self.squared_sums, blocks, "excess_mtl")
        if sums is None:
            sums = [torch.zeros(b.shape, dtype=state_dtype(b), device=b.device) for b in blocks]
        risks = torch.zeros(self.num_tasks, dtype=torch.float64, device=blocks[0].device)
        for block, total in zip(blocks, sums, strict=True):
            squared = block.to(total.dtype).square()
            total.add_(squared)
            risks += (squared / (total + ADAGRAD_EPS).sqrt()).sum(1)
        self.squared_sums = sums
        return risks.cpu()

    def combine_blocks(
        self,
        blocks: list[torch.Tensor],
        gram_matrix: torch.Tensor,
        task_losses: torch.Tensor,
        context: StepContext,
    ) -> list[torch.Tensor]:
        risks = self.excess_risks(blocks)
        self.steps += 1
        if self.steps <= self.warmup:  # uniform weights while the baseline is averaged
            self.warmup_sum += risks
        else:
            if self.baseline is not None:
                risks = risks / (self.baseline + ADAGRAD_EPS)
            elif self.warmup:
                self.baseline = self.warmup_sum / self.warmup
                risks = risks / (self.baseline + ADAGRAD_EPS)
            else:  # the first update's E is the baseline, and is used as it is
                self.baseline = risks
            # Eq. 9 in log space: a huge E saturates the weights instead of overflowing.
            logits = self.task_weights.log() + self.robust_step_size * risks
            self.task_weights = torch.softmax(logits, 0)
        weights = self.task_weights.to(blocks[0].device)
        return [weights.to(block.dtype) @ block for block in blocks]

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "task_weights": self.task_weights.clone(),
            "squared_sums": cloned(self.squared_sums),
            "baseline": self.baseline,
            "warmup_sum": self.warmup_sum.clone(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.task_weights = state["task_weights"].clone()
        self.squared_sums = cloned(state["squared_sums"])
        self.baseline = state["baseline"]
        self.warmup_sum = state["warmup_sum"].clone()
        self.steps = int(state["steps"])
