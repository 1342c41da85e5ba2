"""The per-task gradient engine: one role's (actor's or critic's) step from its per-task losses.

The agent defines each loss once, over groups of rows with one group per task:
``losses_fn(params, *batch, *through) -> (losses [G], aux [G])``, where ``params`` are the role's
parameters (None: the modules' own) and ``through`` the parameters of other roles the loss passes
through, held fixed (the actor's loss goes through the critic). The engine takes the step one of
three ways, all giving sum_i w_i g_i with the method's weights w:

- per task (methods that need task gradients, and diagnostic updates, which also log the PCGrad
  paper's conflict and curvature diagnostics): one ``torch.func`` vmap pass
  of the one-group loss over the task dimension gives every task's gradient; the shared
  parameters' Gram matrix is assembled block by block, the method turns it into w, and each shared
  parameter's gradient is w @ its [T, ...] block. A task-specific parameter ([T, ...], one slice
  per task) gets its own task's gradient on its own slice, untouched (times 1/T, as the gradient of
  the mean loss would give it): methods only combine what tasks share.
- the mean, compiled (``mean`` with ``agent.compile``): torch.func.grad of the mean loss.
- one backward pass (``mean`` eagerly, and the loss weightings): w from the losses alone, then
  the vector-Jacobian product of the losses with w.

Then the non-finite check (nothing changes if a loss or gradient is NaN or infinite), the global
gradient-norm clip and the optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mtrl.gradients.base import GradientMethod, StepContext
from mtrl.gradients.compiled import Passes
from mtrl.gradients.curvature import multitask_curvature
from mtrl.gradients.diagnostics import conflict_diagnostics, curvature_diagnostics
from mtrl.gradients.gram import assemble_gram

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
        if self.method.needs_task_grads or diagnose:
            result = self._per_task_step(losses_fn, batch, through, diagnose)
        elif self.passes.compiles and self.method.constant_loss_weights:
            result = self._compiled_mean_step(losses_fn, batch, through)
        else:
            result = self._backward_step(losses_fn, batch, through)
        if self.method.needs_losses_after_step and result.stepped:
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
        weights = self.method.weights(None, losses.detach(), StepContext())  # [T]
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
        gram_matrix, layer_gram = assemble_gram(shared, flat)
        context = StepContext(layer_gram=layer_gram)
        combined, weights = self.method.combine_blocks(flat, gram_matrix, losses, context)
        for name, gradient in zip(shared, combined, strict=True):
            self.params[name].grad = gradient.view_as(self.params[name])
        for name in grads:
            if name in self.task_specific:
                self.params[name].grad = grads[name] / num_tasks
        return gram_matrix, self._logged(weights)

    def _logged(self, weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if weights is None or not self.method.reports_weights:
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
