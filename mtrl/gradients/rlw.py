"""RLW (Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
Learning", TMLR 2022, Alg. 2 with the normal distribution): loss weights T softmax(eps),
eps ~ N(0, I) drawn afresh every step from the method's generator.

The baseline every weighting should beat: no per-task gradients, no state but the generator.
Scale: the loss weights have mean 1 like our other weightings', so the step is
sum_i softmax(eps)_i g_i, the paper's (softmax weights on the summed losses) and torchjd's Random's:
ratio 1.
"""

from __future__ import annotations

import torch

from mtrl.gradients.weighting import LossScaleWeighting


class RandomLossWeighting(LossScaleWeighting):
    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        # normalize: softmax(eps) times T / sum = T softmax(eps), with sum 1 up to rounding.
        super().__init__(num_tasks, seed, normalize=True)

    def raw_weights(self, loss_scale: torch.Tensor) -> torch.Tensor:
        draw = torch.randn(self.num_tasks, generator=self.generator, dtype=torch.float64)
        return torch.softmax(draw, 0)
