"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024, Eq. 4).

Alpha-fair allocation of the step d = sum_i w_i g_i among the tasks, task i's utility being
g_i . d: w > 0 with (G w)_i = w_i^(-1/alpha). alpha = 1 is proportional fairness, Nash-MTL's
condition; alpha -> infinity approaches max-min fairness, alpha -> 0 the mean. The authors solve the
system approximately (scipy's least_squares in their supervised code, 20 SGD steps in their MTRL
code); it is the stationarity condition of the strictly convex
1/2 w^T G w - sum_i w_i^(1 - 1/alpha) / (1 - 1/alpha), solved here to rounding error by the damped
Newton method of ``nash_mtl.py``.

Scale: the paper's d = sum_i w_i g_i is not normalised (scaling every gradient by s scales it by
s^((1 - alpha) / (1 + alpha))); ours returns w / sum_i w_i, the mean where the tasks agree exactly,
so torchjd's FairGrad is ours times sum_i w_i.
"""

from __future__ import annotations

import math

import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.nash_mtl import fair_weights


class FairGrad(GramWeighting):
    def __init__(self, num_tasks: int, seed: int = 0, alpha: float = 1.0) -> None:
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"fairgrad: alpha must be a positive number, got {alpha}")
        super().__init__(num_tasks, seed)
        self.alpha = float(alpha)

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        return fair_weights(gram_matrix, self.alpha)
