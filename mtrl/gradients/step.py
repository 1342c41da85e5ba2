"""The per-task gradient engine: one role's (actor's or critic's) step from its per-task losses.

The agent defines each loss once, over groups of rows with one group per task:
``losses_fn(params, *batch, *through) -> (losses [G], aux [G])``, where ``params`` are the role's
parameters (None: the modules' own) and ``through`` the parameters of other roles the loss passes
through, held fixed (the actor's loss goes through the critic). The engine takes the step one of
three ways, all giving sum_i w_i g_i with the method's weights w, chosen from the method's kind
(its type, ``base.py``; docs/design.md):

- per task (Gram weightings and block aggregators, and diagnostic updates, which also log the
  PCGrad paper's conflict and curvature diagnostics): one ``torch.func`` vmap pass
  of the one-group loss over the task dimension gives every task's gradient; the shared
  parameters' Gram matrix is assembled block by block, the method turns it into w, and each shared
  parameter's gradient is w @ its [T, ...] block. A task-specific parameter ([T, ...], one slice
  per task) gets its own task's gradient on its own slice, untouched (times 1/T, as the gradient of
  the mean loss would give it): methods only combine what tasks share.
- the mean, compiled (``mean`` with ``agent.compile``): torch.func.grad of the mean loss.
- one backward pass (``mean`` eagerly, the loss weightings, and a Gram weighting's updates between
  solves under its ``update_every`` schedule, with the last solved w): the vector-Jacobian product
  of the losses with w.

Then the non-finite check (nothing changes if a loss or gradient is NaN or infinite), the global
gradient-norm clip and the optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mtrl.gradients.base import (
    BlockAggregator,
    GradientMethod,
    GramWeighting,
    LossWeighting,
    StepContext,
    task_weights,
    weighted_blocks,
)
from mtrl.gradients.compiled import Passes
from mtrl.gradients.curvature import multitask_curvature
from mtrl.gradients.diagnostics import conflict_diagnostics, curvature_diagnostics
from mtrl.gradients.gram import assemble_gram
from mtrl.gradients.mean import Mean

LossesFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass
class StepResult:
    losses: torch.Tensor  # [T], detached
    aux: torch.Tensor  # [T]: the loss function's second output, per task
    stepped: bool  # False when a loss or gradient was non-finite: then nothing changed
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class GradientStep:
    """The step of one role: its parameters, which of them are task-specific, its method and its
    optimiser."""

    def __init__(
        self,
        role: str,
        module: nn.Module,
        task_specific: set[str],
        method: GradientMethod,
        optimizer: torch.optim.Optimizer,
        passes: Passes,
        grad_clip_norm: float = 0.0,
    ) -> None:
        self.role, self.method, self.optimizer, self.passes = role, method, optimizer, passes
        self.task_specific, self.grad_clip_norm = task_specific, grad_clip_norm
        # Listed once: walking the modules on every update was a visible share of an MT1 update.
        # Loading a state dict copies into these same tensors.
        self.params = dict(module.named_parameters())
        # A Gram weighting's schedule (``GramWeighting.update_every``): the steps taken since the
        # start and the weights of the last solve, reused until the next one.
        self.calls = 0
        self.previous: torch.Tensor | None = None

    @property
    def solves_every(self) -> int:
        """k of a Gram weighting solved on one update in k; 1 for every other method."""
        return self.method.update_every if isinstance(self.method, GramWeighting) else 1

    def _solves_next(self) -> bool:
        return self.previous is None or self.calls % self.solves_every == 0

    def task_params(self) -> tuple[dict[str, torch.Tensor], dict[str, int | None]]:
        """Detached parameters and their vmap dimensions: a task-specific parameter is [T, ...]
        and each task gets its own slice (so its gradient is [T, ...], not [T, T, ...])."""
        params = {n: p.detach() for n, p in self.params.items()}
        return params, {n: 0 if n in self.task_specific else None for n in params}

    def __call__(
        self,
        losses_fn: LossesFn,
        batch: tuple[torch.Tensor, ...],  # each [T, ...], a group per task
        through: tuple[GradientStep, ...] = (),
        diagnose: bool = False,
    ) -> StepResult:
        method = self.method
        per_task = not isinstance(method, LossWeighting) and self._solves_next()
        if diagnose or per_task:
            result = self._per_task_step(losses_fn, batch, through, diagnose)
        elif self.passes.compiles and isinstance(method, Mean):
            result = self._compiled_mean_step(losses_fn, batch, through)
        else:
            result = self._backward_step(losses_fn, batch, through)
        # Only a method that overrides the hook learns from the losses after the step (FAMO).
        if type(method).after_step is not GradientMethod.after_step and result.stepped:
            with torch.no_grad():  # the same batch (and noise) through the stepped parameters
                after, _ = losses_fn(None, *batch, *(None for _ in through))
            self.method.after_step(after)
        return result

    # ------------------------------------------------------------------------------ the passes
    def per_task_gradients(
        self, losses_fn: LossesFn, batch: tuple[torch.Tensor, ...], through=()
    ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """One vmap pass: per-task gradients {name: [T, ...]} and (losses [T], aux [T])."""
        params, dims = self.task_params()
        fixed = [step.task_params() for step in through]
        in_dims = (dims, *([0] * len(batch)), *(d for _, d in fixed))
        num_batch = len(batch)

        def task_loss(params, *args):  # one group: its rows without the group dimension
            rows = [x[None] for x in args[:num_batch]]
            losses, aux = losses_fn(params, *rows, *args[num_batch:])
            return losses[0], (losses[0].detach(), aux[0])

        def build():
            return torch.func.vmap(torch.func.grad(task_loss, has_aux=True), in_dims=in_dims)

        args = (params, *batch, *(p for p, _ in fixed))
        return self.passes.run(f"_{self.role}_task_loss", build, *args)

    def _per_task_step(self, losses_fn, batch, through, diagnose) -> StepResult:
        grads, (losses, aux) = self.per_task_gradients(losses_fn, batch, through)
        if not _finite(losses):
            return self._skipped(losses, aux)
        gram_matrix, metrics = self.apply(grads, losses)
        if not diagnose:
            return StepResult(losses, aux, self.optimizer_step(losses), metrics)
        before = {n: p.detach().clone() for n, p in self.params.items()}
        stepped = self.optimizer_step(losses)
        diagnostics = conflict_diagnostics(gram_matrix)
        if stepped:  # the curvature along the update just applied
            curvature = self.curvature(losses_fn, batch, through, before)
            diagnostics |= curvature_diagnostics(gram_matrix, curvature)
        for key, value in diagnostics.items():  # gradients/x -> gradients/critic/x, etc.
            group, name = key.split("/", 1)
            named = f"{self.role}/{name}" if group == "gradients" else f"{self.role}_{name}"
            metrics[f"{group}/{named}"] = value
        return StepResult(losses, aux, stepped, metrics)

    def curvature(self, losses_fn, batch, through, before: dict[str, torch.Tensor]):
        """The PCGrad paper's multi-task curvature l of the mean loss on this batch, along the
        step from ``before`` to the parameters now (``curvature.py``)."""
        fixed = [step.task_params()[0] for step in through]

        def mean_loss(params):
            return losses_fn(params, *batch, *fixed)[0].mean()

        return multitask_curvature(mean_loss, before, self.task_params()[0])

    def _compiled_mean_step(self, losses_fn, batch, through) -> StepResult:
        def mean_loss(params, *args):
            losses, aux = losses_fn(params, *args)
            return losses.mean(), (losses.detach(), aux)

        def build():
            return torch.func.grad(mean_loss, has_aux=True)

        fixed = [step.task_params()[0] for step in through]
        key = f"_{self.role}_mean_loss"
        grads, (losses, aux) = self.passes.run(key, build, self.task_params()[0], *batch, *fixed)
        for name, param in self.params.items():
            param.grad = grads[name]
        return StepResult(losses, aux, self.optimizer_step(losses))

    def _backward_step(self, losses_fn, batch, through) -> StepResult:
        losses, aux = losses_fn(None, *batch, *(None for _ in through))
        if not _finite(losses):
            return self._skipped(losses.detach(), aux.detach())
        if isinstance(self.method, LossWeighting):
            weights = self.method.weights(losses.detach(), StepContext())  # [T]
        else:  # a Gram weighting between its solves
            weights = self._reused(losses.device)
        params = [p for p in self.params.values() if p.requires_grad]
        grads = torch.autograd.grad(losses, params, grad_outputs=weights.to(losses.dtype))
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        losses = losses.detach()
        return StepResult(losses, aux.detach(), self.optimizer_step(losses), self._logged(weights))

    def _skipped(self, losses: torch.Tensor, aux: torch.Tensor) -> StepResult:
        """A step not taken: non-finite losses never reach the method, whose state (GradNorm's
        initial losses, uncertainty's variances, DWA's history) would keep them for good."""
        for param in self.params.values():
            param.grad = None
        return StepResult(losses, aux, False, {})

    # ------------------------------------------------------------------------ combine and step
    def apply(
        self, grads: dict[str, torch.Tensor], losses: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sets .grad from per-task gradients {name: [T, ...]}: shared parameters get the method's
        combination, task-specific ones their own task's gradient. Returns the shared parameters'
        Gram matrix and the weights' metrics."""
        num_tasks = self.method.num_tasks
        shared = [n for n in grads if n not in self.task_specific]
        flat = [grads[n].reshape(num_tasks, -1) for n in shared]  # [T, P_n] views
        gram_matrix, grams = assemble_gram(flat)
        context = StepContext(tuple(shared), tuple(grams))
        if isinstance(self.method, BlockAggregator):
            combined, weights = self.method.combine_blocks(flat, gram_matrix, losses, context), None
        else:
            weights = self._weights(gram_matrix, losses, context)
            combined = weighted_blocks(weights, flat)
        for name, gradient in zip(shared, combined, strict=True):
            self.params[name].grad = gradient.view_as(self.params[name])
        for name in grads:
            if name in self.task_specific:
                self.params[name].grad = grads[name] / num_tasks
        return gram_matrix, self._logged(weights)

    def _weights(self, gram_matrix, losses, context) -> torch.Tensor:
        """The method's weights, or under a Gram weighting's schedule the last solved ones."""
        if self.solves_every == 1:
            return task_weights(self.method, gram_matrix, losses, context)
        if not self._solves_next():
            return self._reused(gram_matrix.device)
        self.previous = task_weights(self.method, gram_matrix, losses, context).cpu()
        self.calls += 1
        return self.previous.to(gram_matrix.device)

    def _reused(self, device: torch.device) -> torch.Tensor:
        self.calls += 1
        return self.previous.to(device)

    def method_state_dict(self) -> dict[str, Any]:
        """The method's state, with the schedule's where it has one (under the names Nash-MTL
        kept it by before the engine did, so that checkpoints load either way)."""
        method_state = self.method.state_dict()
        if self.solves_every == 1:
            return method_state
        return {**method_state, "calls": self.calls, "previous": self.previous}

    def load_method_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state)
        if self.solves_every > 1 and "calls" in state:
            self.calls, self.previous = int(state["calls"]), state["previous"]

    def _logged(self, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """per_task/<role>_weight (times T): of every method but the mean (always 1) and the block
        aggregators (no weights)."""
        if weights is None or isinstance(self.method, Mean):
            return {}
        return {f"per_task/{self.role}_weight": weights.float() * self.method.num_tasks}

    def optimizer_step(self, losses: torch.Tensor) -> bool:
        """Steps unless a loss or gradient is non-finite (then nothing changes); returns whether
        it stepped. The check costs one host sync per step, which the safety is worth."""
        params = [p for p in self.params.values() if p.grad is not None]
        # One fused check of every tensor (the one mixed-precision scalers use; its "unscale" by
        # 1 leaves values as they are) instead of an isfinite + all per parameter, small ops that
        # were a visible share of an MT1 update (docs/benchmarks.md).
        nonfinite = torch.zeros(1, device=losses.device)
        torch._amp_foreach_non_finite_check_and_unscale_(
            [losses.detach().clone()] + [p.grad for p in params],
            nonfinite,
            torch.ones(1, device=losses.device),
        )
        if bool(nonfinite):
            for param in params:
                param.grad = None
            return False
        if self.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(params, self.grad_clip_norm)
        self.optimizer.step()
        return True


def _finite(losses: torch.Tensor) -> bool:
    """Whether every task's loss is finite: one host sync, on the paths that hand the losses to a
    method (the compiled mean path hands them to none, and its optimiser step checks them)."""
    return bool(torch.isfinite(losses).all())
