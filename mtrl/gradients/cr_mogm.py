"""CR-MOGM (Zhou, Zhang, Jiang, Yang, Chen & Xu, "On the Convergence of Stochastic Multi-Objective
Gradient Manipulation and Beyond", NeurIPS 2022): correlation-reduced stochastic MOGM.

A Gram weighting with state that wraps another: a stochastic MOGM method (MGDA, PCGrad, CAGrad,
...) computes its weights lambda_hat_k from the mini-batch's G, and CR-MOGM steps along the moving
average lambda_k = alpha lambda_{k-1} + (1 - alpha) lambda_hat_k instead (lambda_0 = lambda_hat_1,
so the first step is the wrapped method's), which de-correlates the weights from the batch the step
is taken on and gives the convergence guarantee the plain stochastic methods lack. ``base`` names
the wrapped method (any Gram weighting of the registry; default ``mgda``, the MOGM the paper's
analysis starts from, our choice); ``alpha = 0.9`` is torchjd's ``CRMOGMWeighting``'s default (the
paper lets alpha_k grow towards 1 as the learning rate decays). The scale is the wrapped
method's: an average of weights that sum to 1 sums to 1.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import GramWeighting


class CRMOGM(GramWeighting):
    """The wrapped method's weights, averaged over updates with factor ``alpha`` (Zhou et al. 2022)."""

    def __init__(
        self, num_tasks: int, seed: int = 0, base: str = "mgda", alpha: float = 0.9
    ) -> None:
        from mtrl.gradients import make  # the registry imports this module

        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"cr_mogm: alpha must be in [0, 1], got {alpha}")
        super().__init__(num_tasks, seed)
        if base == "cr_mogm":
            raise ValueError("cr_mogm: base must be another method than cr_mogm")
        self.base = make(base, num_tasks, seed=seed)
        if not isinstance(self.base, GramWeighting):
            raise ValueError(
                f"cr_mogm: base must weight the task gradients from their Gram matrix, and {base} "
                "does not (a loss weighting, or it reads the gradients themselves)"
            )
        self.alpha = alpha
        self.average: torch.Tensor | None = None  # lambda_{k-1}

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        current = self.base.weights(gram_matrix, task_losses, context).double()
        if self.average is None:
            self.average = current
        else:
            previous = self.average.to(current.device)
            self.average = self.alpha * previous + (1.0 - self.alpha) * current
        return self.average

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "base": self.base.state_dict(), "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.base.load_state_dict(state["base"])
        self.average = state["average"]
