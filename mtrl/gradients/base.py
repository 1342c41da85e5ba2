"""The gradient-method contract (docs/design.md, "The method contract"): a method's kind is its type.

Every method but one kind is a choice of task weights w [T]: the step is sum_i w_i g_i, on the
scale of the mean gradient (w = 1/T). The kinds differ in what the weights are computed from, and
the engine (``mtrl.gradients.step``) reads the kind from the type alone:

- ``GramWeighting.weights(G, losses, context)``: from the Gram matrix G = J J^T of the shared
  parameters' task gradients (PCGrad, MGDA, CAGrad, Nash-MTL, ...). The engine computes the task
  gradients in one vmap pass, assembles G block by block, applies w parameter by parameter and
  never concatenates the task gradients into one [T, P] matrix.
- ``LossWeighting.weights(losses, context)``: from the losses alone (DWA, UW, FAMO, RLW, the mean):
  the step is the gradient of sum_i w_i L_i, one backward pass and no per-task gradients.
- ``BlockAggregator.combine_blocks(blocks, G, losses, context)``: methods that combine coordinates
  rather than tasks (GradDrop), so that no one w describes the step.

The optional hooks (``observe``, ``after_step``, ``state_dict``/``load_state_dict``) are no-ops on
the common base. ``combine`` on an explicit J goes through the engine's own Gram assembly, so what
the tests check is what trains. A direct ``GradientMethod`` subclass with ``weights(G, losses,
context)`` (the contract before the kinds) is a Gram weighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mtrl.gradients.gram import assemble_gram


@dataclass(frozen=True)
class StepContext:
    """What a method may read besides G and the losses: G split by shared parameter.

    ``grams[n]`` is the [T, T] Gram matrix of the n-th shared parameter's task gradients, named
    ``names[n]`` as in the module (``trunk.0.weight``); G is their sum. Both are empty on the
    one-backward path of the loss weightings, which computes no task gradients."""

    names: tuple[str, ...] = ()
    grams: tuple[torch.Tensor, ...] = ()


class GradientMethod:
    """The common base of the three kinds: the task count, a generator for the methods that draw
    random numbers (checkpointed), and the optional hooks, each a no-op here."""

    def __init__(self, num_tasks: int, seed: int = 0) -> None:
        self.num_tasks = num_tasks
        self.generator = torch.Generator().manual_seed(seed)

    def observe(self, task_index: torch.Tensor, success: torch.Tensor) -> None:
        """Finished training episodes' success ([n] tasks, [n] values), for KPI-driven methods."""

    def after_step(self, task_losses: torch.Tensor) -> None:
        """The losses [T] on the same batch after the step. The engine runs that extra forward
        pass only for a method whose class overrides this hook (FAMO)."""

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def combine(
        self,
        task_grads: torch.Tensor,  # [T, P]
        task_losses: torch.Tensor | None,  # [T]; None for methods that never read them
        layout: list[tuple[str, int]] | None = None,  # the columns' parameters: (name, numel)
    ) -> torch.Tensor:
        """sum_i w_i g_i [P] for an explicit J, through the engine's own Gram assembly."""
        layout = layout or [("weight", task_grads.shape[1])]
        names = [name for name, _ in layout]
        blocks = list(task_grads.split([numel for _, numel in layout], dim=1))
        gram_matrix, grams = assemble_gram(blocks)
        if task_losses is not None:  # the loss weightings' w then has J's precision
            task_losses = task_losses.to(task_grads.dtype)
        context = StepContext(tuple(names), tuple(grams))
        if isinstance(self, BlockAggregator):
            return torch.cat(self.combine_blocks(blocks, gram_matrix, task_losses, context))
        weights = task_weights(self, gram_matrix, task_losses, context)
        return torch.cat(weighted_blocks(weights, blocks))


class GramWeighting(GradientMethod):
    """Task weights from the Gram matrix of the task gradients.

    ``update_every`` is a schedule the engine keeps, not the method: with k > 1 the engine asks
    for weights on one update in k and, in between, steps on the gradient of sum_i w_i L_i with
    the last weights, in one backward pass without task gradients (Nash-MTL-50). A method offers
    it as a constructor option by setting this attribute (``nash_mtl:update_every=50``)."""

    update_every: int = 1

    def weights(
        self,
        gram_matrix: torch.Tensor,  # [T, T] float64
        task_losses: torch.Tensor,  # [T], detached
        context: StepContext,
    ) -> torch.Tensor:
        """w [T] with the step sum_i w_i g_i."""
        raise NotImplementedError(f"{type(self).__name__} defines no weights")


class LossWeighting(GradientMethod):
    """Task weights from the losses alone: the step is the gradient of sum_i w_i L_i, taken in one
    backward pass with no per-task gradients."""

    def weights(self, task_losses: torch.Tensor, context: StepContext) -> torch.Tensor:
        """w [T] (the losses [T] are detached) with the step sum_i w_i g_i."""
        raise NotImplementedError(f"{type(self).__name__} defines no weights")


class BlockAggregator(GradientMethod):
    """Combines coordinates rather than tasks (GradDrop): it reads the task gradients themselves,
    block by block, and no task weights describe its step (none are logged)."""

    def combine_blocks(
        self,
        blocks: list[torch.Tensor],  # each [T, P_n]: one shared parameter's task gradients
        gram_matrix: torch.Tensor,  # [T, T], their Gram matrix
        task_losses: torch.Tensor,
        context: StepContext,
    ) -> list[torch.Tensor]:
        """Each block's combined gradient [P_n]."""
        raise NotImplementedError(f"{type(self).__name__} defines no combine_blocks")


def task_weights(
    method: GradientMethod,
    gram_matrix: torch.Tensor | None,
    task_losses: torch.Tensor,
    context: StepContext,
) -> torch.Tensor:
    """The weights w [T] of a Gram or loss weighting, by its kind (any other method is a Gram
    weighting: the contract before the kinds)."""
    if isinstance(method, LossWeighting):
        return method.weights(task_losses, context)
    return method.weights(gram_matrix, task_losses, context)  # type: ignore[attr-defined]


def weighted_blocks(weights: torch.Tensor, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
    """w @ each block [T, P_n]: the step's gradient of each shared parameter [P_n]."""
    in_dtype = weights.to(blocks[0].dtype)
    return [in_dtype @ block for block in blocks]
