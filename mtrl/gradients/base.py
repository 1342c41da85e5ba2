"""The gradient-method contract (docs/gradient-methods.md): ``weights(G, losses, context)`` and nothing else.

Every method here is a choice of task weights w [T]: the step is sum_i w_i g_i, on the scale of the
mean gradient (w = 1/T). It needs only inner products of task gradients, so the engine
(``mtrl.gradients.step``) hands it the Gram matrix G = J J^T, applies w parameter by parameter, and
never concatenates the task gradients into one [T, P] matrix. ``combine`` on an explicit J is
derived from ``weights`` through the same Gram assembly, so what the tests check is what trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mtrl.gradients.gram import assemble_gram


@dataclass(frozen=True)
class StepContext:
    """What a method may read besides G and the losses."""

    # [T, T] Gram matrix of the last shared layer's weights (GradNorm measures norms there);
    # equal to G where the parameters have no weight matrix.
    layer_gram: torch.Tensor | None = None


class GradientMethod:
    """Per-task weights of one role's (actor's or critic's) task gradients.

    ``needs_task_grads`` is False for methods whose weights depend on the losses only: the engine
    then calls ``weights(None, losses, context)`` and takes sum_i w_i g_i as the gradient of
    sum_i w_i L_i, in one backward pass with no per-task gradients. The engine reads it on every
    step, so a method may need them on some steps only (Nash-MTL between its solves).
    """

    needs_task_grads: bool = True
    # Whether the weights are the same every step (the mean): the engine may then differentiate
    # the mean loss in a compiled pass instead of re-weighting the losses it has just computed.
    constant_loss_weights: bool = True
    # Whether the weights (times T) are worth logging as per_task/<role>_weight.
    reports_weights: bool = True
    # Whether the method learns from the losses re-evaluated on the same batch after the step
    # (FAMO): the engine then runs one more forward pass and calls ``after_step``.
    needs_losses_after_step: bool = False
    # Whether the step combines coordinates rather than tasks (GradDrop): then no one weighting
    # w describes it, ``weights`` is undefined and only ``combine_blocks`` (and ``combine``) apply.
    combines_coordinates: bool = False

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        self.num_tasks = num_tasks
        self.generator = torch.Generator().manual_seed(seed)

    def weights(
        self,
        gram_matrix: torch.Tensor | None,  # [T, T] float64; None when needs_task_grads is False
        task_losses: torch.Tensor,  # [T], detached
        context: StepContext,
    ) -> torch.Tensor:
        """w [T] with the step sum_i w_i g_i. The default is the loss weighting's, w = l / T."""
        return self.loss_weights(task_losses) * (1.0 / self.num_tasks)

    def loss_weights(self, task_losses: torch.Tensor) -> torch.Tensor:
        """Per-task weights [T] (mean 1) of the methods that only re-weight the mean loss."""
        return torch.ones_like(task_losses)

    def combine_blocks(
        self,
        blocks: list[torch.Tensor],  # each [T, P_n]: one shared parameter's task gradients
        gram_matrix: torch.Tensor,
        task_losses: torch.Tensor,
        context: StepContext,
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Each block's combined gradient [P_n], and the weights (None where no single w
        describes the step). Every method but GradDrop is ``weights`` applied to every block."""
        weights = self.weights(gram_matrix, task_losses, context)
        in_dtype = weights.to(blocks[0].dtype)
        return [in_dtype @ block for block in blocks], weights

    def observe(self, task_index: torch.Tensor, success: torch.Tensor) -> None:
        """Finished training episodes' success ([n] tasks, [n] values), for KPI-driven methods."""

    def after_step(self, task_losses: torch.Tensor) -> None:
        """The losses [T] on the same batch after the step (``needs_losses_after_step``)."""

    def combine(
        self,
        task_grads: torch.Tensor,  # [T, P]
        task_losses: torch.Tensor | None,  # [T]; None for methods that never read them
        layout: list[tuple[str, int]] | None = None,  # the columns' parameters: (name, numel)
    ) -> torch.Tensor:
        """sum_i w_i g_i [P] for an explicit J, through the engine's own Gram assembly."""
        layout = layout or [("weight", task_grads.shape[1])]
        blocks = list(task_grads.split([numel for _, numel in layout], dim=1))
        gram_matrix, layer_gram = assemble_gram([name for name, _ in layout], blocks)
        if task_losses is not None:  # the loss weightings' w then has J's precision
            task_losses = task_losses.to(task_grads.dtype)
        context = StepContext(layer_gram=layer_gram)
        combined, _ = self.combine_blocks(blocks, gram_matrix, task_losses, context)
        return torch.cat(combined)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
