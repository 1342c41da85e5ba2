"""SDMGrad (Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and Provable
Stochastic Algorithms", NeurIPS 2023, Alg. 1).

A Gram weighting with state: MGDA's min-norm problem pulled towards a preferred direction,
min_{w in simplex} 1/2 ||sum_i (w_i + lam wt_i) g_i||^2 with wt = 1/T (the mean), solved by
``iterations`` steps of projected SGD with momentum on w, warm-started from the last update's w;
the step is sum_i (w_i + lam wt_i) g_i / (1 + lam) (weights summing to 1, the mean's scale and
torchjd's ``SDMGradWeighting``'s). As in the authors' code, LibMTL and torchjd, G is first divided
by (mean_i ||g_i||)^2 + 1e-8, so the inner learning rate does not depend on the gradients' scale.
The paper estimates G from two independent batches (J_1 J_2^T); the engine has one, G = J J^T.
Defaults are the authors' experiments' and torchjd's: lam 0.3, lr 10, momentum 0.5, 20 iterations.
"""

from __future__ import annotations

from typing import Any

import torch

from mtrl.gradients.base import GramWeighting
from mtrl.gradients.modo import project_onto_simplex

NORM_FLOOR = 1e-8  # the reference implementations' floor on the squared mean norm


class SDMGrad(GramWeighting):
    """SDMGrad's weights (Xiao et al. 2023, Alg. 1): projected SGD on w, then (w + lam / T) / (1 + lam)."""

    def __init__(
        self,
        num_tasks: int,
        seed: int = 0,
        lam: float = 0.3,
        lr: float = 10.0,
        momentum: float = 0.5,
        iterations: int = 20,
    ) -> None:
        if lam < 0 or lr <= 0 or not 0 <= momentum < 1 or iterations < 1:
            raise ValueError(
                "sdmgrad: need lam >= 0, lr > 0, 0 <= momentum < 1 and iterations >= 1, got "
                f"lam={lam}, lr={lr}, momentum={momentum}, iterations={iterations}"
            )
        super().__init__(num_tasks, seed)
        self.lam, self.lr, self.momentum, self.iterations = lam, lr, momentum, iterations
        self.simplex_weights = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)

    def weights(self, gram_matrix, task_losses, context) -> torch.Tensor:
        matrix = gram_matrix.detach().cpu().double()
        mean_norm = matrix.diagonal().clamp_min(0.0).sqrt().mean()
        matrix = matrix / (mean_norm**2 + NORM_FLOOR)
        preferred = self.lam * torch.full_like(self.simplex_weights, 1.0 / self.num_tasks)
        w, velocity = self.simplex_weights, torch.zeros_like(self.simplex_weights)
        for _ in range(self.iterations):
            velocity = self.momentum * velocity + matrix @ (w + preferred)
            w = project_onto_simplex(w - self.lr * velocity)
        self.simplex_weights = w
        return ((w + preferred) / (1.0 + self.lam)).to(gram_matrix.device)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "simplex_weights": self.simplex_weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.simplex_weights = state["simplex_weights"].clone()
