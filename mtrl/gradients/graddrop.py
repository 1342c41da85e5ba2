"""GradDrop (Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign
Dropout", NeurIPS 2020, Eq. 1-3).

Per coordinate of a shared parameter, the sign purity P = 1/2 (1 + sum_i g_i / sum_i |g_i|) is the
probability of keeping the positive parts: with U ~ U(0, 1) drawn per coordinate, task i's value is
kept where (P > U and g_i > 0) or (P < U and g_i < 0), and the kept values are summed. Where the
tasks agree in sign (P = 0 or 1) every value is kept: without conflict the step is the mean's.
The paper drops signs on activations' gradients at a chosen layer; here, as in most MTL
libraries' gradient-level versions, it acts on the shared parameters' gradients. The result is
divided by T (the mean's scale; the paper sums). It is the one method that reads the task
gradients themselves, block by block, rather than their Gram matrix.
"""

from __future__ import annotations

import torch

from mtrl.gradients.base import BlockAggregator, StepContext

TINY = 1e-30


def sign_dropout(block: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """One block of task gradients [T, P_n] and its draws U [P_n] -> the kept sum / T, [P_n].

    Keeping the positive values of a coordinate sums to its positive part, keeping the negative
    ones to the rest of its total, and sum_i |g_i| = positive - negative: two reductions over
    [T, P_n] instead of building a mask, which cost far more (docs/benchmarks.md)."""
    total = block.sum(0)
    positive = block.clamp_min(0).sum(0)
    negative = total - positive
    purity = 0.5 * (1 + total / (positive - negative).clamp_min(TINY))
    return torch.where(purity > uniform, positive, negative) / block.shape[0]


class GradDrop(BlockAggregator):
    def combine_blocks(
        self,
        blocks: list[torch.Tensor],
        gram_matrix: torch.Tensor,
        task_losses: torch.Tensor,
        context: StepContext,
    ) -> list[torch.Tensor]:
        combined = []
        for block in blocks:  # U from the method's generator: reproducible and checkpointed
            uniform = torch.rand(block.shape[1], generator=self.generator, dtype=block.dtype)
            combined.append(sign_dropout(block, uniform.to(block.device)))
        return combined
