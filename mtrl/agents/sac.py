"""Multi-task SAC conditioned on the task one-hot (Yu et al. 2019's MT-SAC; Haarnoja et al. 2018).

One update reads top to bottom: TD targets for all tasks at once, the critic step, the actor step, the
per-task temperatures, the target critics. Losses are kept per task ([T]) so that the gradient method
(``agent.critic_grad`` / ``agent.actor_grad``) decides how tasks share the step; with ``mean`` the
result is the gradient of the mean loss, taken in one backward pass.
"""

from __future__ import annotations

import copy
import functools
import math
import re
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mtrl import gradients
from mtrl.agents.networks import (
    initialise,
    make_network,
    parameter_count,
    task_specific_names,
)
from mtrl.config import AgentConfig
from mtrl.gradients.diagnostics import conflict_diagnostics
from mtrl.gradients.gram import gram
from mtrl.replay import Batch


def _last_layer_gram(
    names: list[str], grams: list[torch.Tensor], whole: torch.Tensor
) -> torch.Tensor:
    """The Gram matrix of the last shared layer's weights (GradNorm measures norms there); for an
    ensemble (the twin critics) the last layer of every member together."""
    weights = [k for k, name in enumerate(names) if name.endswith("weight")]
    if not weights:
        return whole
    member_free = [re.sub(r"^members\.\d+\.", "", name) for name in names]
    last = member_free[weights[-1]]
    return torch.stack([grams[k] for k in weights if member_free[k] == last]).sum(0)


def _call(module: nn.Module, params: dict[str, torch.Tensor] | None, x: torch.Tensor):
    """The module on x, with its own parameters (None) or with ``params`` (torch.func)."""
    return module(x) if params is None else functional_call(module, params, (x,))


def squashed_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """tanh(mean + std * noise) and its log-probability: [..., A], [...]."""
    pre_tanh = mean + log_std.exp() * noise
    log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
    log_prob = log_prob - (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
    return torch.tanh(pre_tanh), log_prob


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy; its body is any network of the registry."""

    def __init__(self, obs_dim: int, action_dim: int, num_tasks: int, config: AgentConfig) -> None:
        super().__init__()
        self.body = make_network(
            config.actor, obs_dim, 2 * action_dim, num_tasks, config.hidden_sizes
        )
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [G, B, obs], each group from one task -> mean, log std [G, B, A]."""
        mean, log_std = self.body(obs).chunk(2, dim=-1)
        # Soft bounds on log std (as CleanRL and SpinningUp do) keep gradients alive at the edges.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(log_std) + 1
        )
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in [-1, 1] and its log-probability: [G, B, A], [G, B]."""
        mean, log_std = self(obs)
        return squashed_sample(mean, log_std, torch.randn_like(mean))


class MultiTaskSAC:
    """Actor, twin critics with Polyak targets, and one learned temperature per task."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        num_tasks: int,
        config: AgentConfig,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        self.config, self.num_tasks, self.action_dim = config, num_tasks, action_dim
        self.device = torch.device(device)
        self.actor = Actor(obs_dim, action_dim, num_tasks, config).to(self.device)
        # Critic input is [action, obs] so the task one-hot stays the last T features.
        self.critic = make_network(
            config.critic, obs_dim + action_dim, 1, num_tasks, config.hidden_sizes, ensemble=2
        ).to(self.device)
        # McLean et al. 2025's output scales (agent.init=he_uniform): actor 1e-3, critic 3e-3.
        initialise(self.actor.body, config.init, output_bound=1e-3)
        initialise(self.critic, config.init, output_bound=3e-3)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # Parameters that belong to single tasks: never combined, sliced per task in the vmap pass.
        self.task_specific = {
            "actor": task_specific_names(self.actor),
            "critic": task_specific_names(self.critic),
        }
        self.log_alpha = torch.full(
            (num_tasks,),
            math.log(config.init_temperature),
            device=self.device,
            requires_grad=True,
        )
        self.target_entropy = config.target_entropy or -float(action_dim)
        # Named parameters by role, listed once: walking the modules on every update cost 0.5 ms
        # of an MT1 update. Loading a state dict copies into these same tensors.
        self.named_parameters = {
            "actor": dict(self.actor.named_parameters()),
            "critic": dict(self.critic.named_parameters()),
        }
        self.target_parameters = list(self.critic_target.parameters())

        # Fused Adam: one kernel per step instead of ~10 small ops per parameter (measured at MT1,
        # 3 x 400, 128 samples: 12.8 -> 11.2 ms per update, where those small ops are the overhead).
        adam = functools.partial(torch.optim.Adam, fused=True, eps=config.adam_eps)
        self.actor_optimizer = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = adam([self.log_alpha], lr=config.alpha_lr)
        self.critic_method = gradients.make(config.critic_grad, num_tasks, seed=seed)
        self.actor_method = gradients.make(config.actor_grad, num_tasks, seed=seed + 1)
        self._passes: dict[str, Any] = {}  # name -> its function (compiled with agent.compile)
        self.updates = 0
        self.skipped_updates = 0  # updates with a non-finite loss or gradient, never applied
        self.consecutive_skipped = 0

    # ----------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """obs [T, obs_dim] -> actions [T, A] in [-1, 1]."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(1)
        mean, log_std = self.actor(obs_t)
        if not deterministic:  # the policy's sample, without the log-probability acting never uses
            mean = mean + log_std.exp() * torch.randn_like(mean)
        return torch.tanh(mean).squeeze(1).cpu().numpy()

    # ----------------------------------------------------------------------------------- update
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One SAC update on a [T, B] batch; returns detached metrics (tensors, no host sync)."""
        num_tasks, batch_size = batch.reward.shape
        self.updates += 1
        diagnose = bool(self.config.diagnostics_every) and (
            self.updates % self.config.diagnostics_every == 0
        )
        alpha = self.log_alpha.detach().exp()  # [T]
        target = self.td_target(batch)  # [T, B]
        metrics: dict[str, torch.Tensor] = {}

        # Critic: both members regress on the same target.
        critic_losses, q_mean, finite = self._critic_step(batch, target, diagnose, metrics)
        if not finite:  # nothing was stepped: the networks and optimisers are as they were
            return self._skip(metrics, critic_losses)

        # Actor: maximise min-Q plus each task's entropy bonus, through the updated critic.
        noise = torch.randn(num_tasks, batch_size, self.action_dim, device=self.device)  # [T, B, A]
        actor_losses, task_log_prob, finite = self._actor_step(
            batch.obs, noise, alpha, diagnose, metrics
        )

        # Temperatures: each task's alpha tracks its own entropy target. The loss is linear in
        # log alpha, so its gradient is written down rather than taken by a backward pass.
        alpha_loss = -(self.log_alpha.detach() * (task_log_prob + self.target_entropy)).sum()
        if finite:
            self.log_alpha.grad = -(task_log_prob + self.target_entropy)
            self.alpha_optimizer.step()
            self.consecutive_skipped = 0
        else:
            self._count_skip()

        with torch.no_grad():
            torch._foreach_lerp_(
                self.target_parameters,
                list(self.named_parameters["critic"].values()),
                self.config.tau,
            )
        metrics.update(
            {
                "losses/critic": critic_losses.mean(),
                "losses/actor": actor_losses.mean(),
                "losses/alpha": alpha_loss.detach() / num_tasks,
                "charts/q_mean": q_mean,
                "charts/entropy": -task_log_prob.mean(),
                "per_task/alpha": alpha,
                "per_task/critic_loss": critic_losses,
                "per_task/actor_loss": actor_losses,
                "charts/nonfinite_updates": torch.tensor(float(self.skipped_updates)),
            }
        )
        return metrics

    def _count_skip(self) -> None:
        self.skipped_updates += 1
        self.consecutive_skipped += 1

    def _skip(self, metrics: dict, critic_losses: torch.Tensor) -> dict[str, torch.Tensor]:
        self._count_skip()
        metrics["charts/nonfinite_updates"] = torch.tensor(float(self.skipped_updates))
        metrics["per_task/critic_loss"] = critic_losses
        return metrics

    def td_target(self, batch: Batch) -> torch.Tensor:
        """Soft TD targets [T, B]: time-limit truncation bootstraps, only termination stops them.
        The policy's noise is drawn here, outside the (compiled) computation, so that compiling
        leaves the random stream as it is."""
        noise = torch.randn(*batch.reward.shape, self.action_dim, device=self.device)  # [T, B, A]
        return self._run(
            "_soft_td_target",
            lambda: self._soft_td_target,
            batch.next_obs,
            batch.reward,
            batch.terminated,
            noise,
            self.log_alpha.detach(),
        )

    @torch.no_grad()
    def _soft_td_target(self, next_obs, reward, terminated, noise, log_alpha) -> torch.Tensor:
        mean, log_std = self.actor(next_obs)
        next_action, next_log_prob = squashed_sample(mean, log_std, noise)  # [T, B, A], [T, B]
        next_q = self.critic_target(torch.cat([next_action, next_obs], -1)).amin(0).squeeze(-1)
        soft_next_value = next_q - log_alpha.exp()[:, None] * next_log_prob
        return reward + self.config.gamma * (1.0 - terminated) * soft_next_value

    # The losses, each defined once over groups ([G, B, ...], a group per task) as a function of
    # the parameters (None: the modules' own, for plain autograd). The per-task pass vmaps the
    # one-group versions over tasks; the compiled mean pass differentiates the mean over groups.
    def _critic_losses(
        self,
        params: dict[str, torch.Tensor] | None,
        obs: torch.Tensor,  # [G, B, obs]
        action: torch.Tensor,  # [G, B, A]
        target: torch.Tensor,  # [G, B]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group losses [G] (both twin critics regress on the target) and mean Q [G]."""
        q = _call(self.critic, params, torch.cat([action, obs], -1)).squeeze(-1)  # [2, G, B]
        return (q - target).pow(2).sum(0).mean(-1), q.detach().mean((0, 2))

    def _actor_losses(
        self,
        params: dict[str, torch.Tensor] | None,
        critic_params: dict[str, torch.Tensor] | None,  # fixed: the loss goes through them
        obs: torch.Tensor,  # [G, B, obs]
        noise: torch.Tensor,  # [G, B, A]
        alpha: torch.Tensor,  # [G]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group losses [G] (min-Q plus each task's entropy bonus) and mean log-prob [G]."""
        mean, log_std = _call(self.actor, params, obs)
        action, log_prob = squashed_sample(mean, log_std, noise)  # [G, B, A], [G, B]
        q = _call(self.critic, critic_params, torch.cat([action, obs], -1)).amin(0).squeeze(-1)
        return (alpha[:, None] * log_prob - q).mean(-1), log_prob.detach().mean(-1)

    def _critic_task_loss(self, params, obs, action, target):
        """One task's critic loss (its batch without the group dimension) and aux (loss, Q)."""
        loss, q_mean = self._critic_losses(params, obs[None], action[None], target[None])
        return loss[0], (loss[0].detach(), q_mean[0])

    def _actor_task_loss(self, params, obs, noise, alpha, critic_params):
        loss, log_prob = self._actor_losses(
            params, critic_params, obs[None], noise[None], alpha[None]
        )
        return loss[0], (loss[0].detach(), log_prob[0])

    def _critic_mean_loss(self, params, obs, action, target):
        losses, q_mean = self._critic_losses(params, obs, action, target)
        return losses.mean(), (losses.detach(), q_mean.mean())

    def _actor_mean_loss(self, params, critic_params, obs, noise, alpha):
        losses, log_prob = self._actor_losses(params, critic_params, obs, noise, alpha)
        return losses.mean(), (losses.detach(), log_prob)

    def _critic_step(
        self, batch: Batch, target: torch.Tensor, diagnose: bool, metrics: dict
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Returns the per-task losses [T], the mean Q, and whether the step was finite (taken)."""
        method = self.critic_method
        if method.needs_task_grads or diagnose:
            params, param_dims = self._task_params("critic")
            grads, (losses, q_means) = self._per_task_gradients(
                self._critic_task_loss, params, param_dims, batch.obs, batch.action, target
            )
            finite = self._apply("critic", grads, losses, diagnose, metrics)
            return losses, q_means.mean(), finite
        if self._compiles and method.constant_loss_weights:
            grads, (losses, q_mean) = self._gradient_pass(
                self._critic_mean_loss,
                None,
                self._task_params("critic")[0],
                batch.obs,
                batch.action,
                target,
            )
            return losses, q_mean, self._set_and_step("critic", grads, losses)
        # One backward pass of the method's weighted mean loss (mean, the loss weightings).
        losses, q_mean = self._critic_losses(None, batch.obs, batch.action, target)
        finite = self._weighted_mean_step("critic", losses, metrics)
        return losses.detach(), q_mean.mean(), finite

    def _actor_step(
        self,
        obs: torch.Tensor,  # [T, B, obs]
        noise: torch.Tensor,  # [T, B, A]
        alpha: torch.Tensor,  # [T]
        diagnose: bool,
        metrics: dict,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Returns the per-task losses [T], mean log-probabilities [T], and whether it stepped."""
        method = self.actor_method
        if method.needs_task_grads or diagnose:
            params, param_dims = self._task_params("actor")
            critic_params, critic_dims = self._task_params("critic")
            grads, (losses, log_probs) = self._per_task_gradients(
                self._actor_task_loss,
                params,
                param_dims,
                obs,
                noise,
                alpha,
                (critic_params, critic_dims),
            )
            finite = self._apply("actor", grads, losses, diagnose, metrics)
            return losses, log_probs, finite
        if self._compiles and method.constant_loss_weights:
            critic_params = self._task_params("critic")[0]
            grads, (losses, log_probs) = self._gradient_pass(
                self._actor_mean_loss,
                None,
                self._task_params("actor")[0],
                critic_params,
                obs,
                noise,
                alpha,
            )
            return losses, log_probs, self._set_and_step("actor", grads, losses)
        losses, log_probs = self._actor_losses(None, None, obs, noise, alpha)
        finite = self._weighted_mean_step("actor", losses, metrics)
        return losses.detach(), log_probs, finite

    def _task_params(self, role: str) -> tuple[dict[str, torch.Tensor], dict[str, int | None]]:
        """Detached parameters and their vmap dimensions: a task-specific parameter is [T, ...]
        and each task gets its own slice (so its gradient is [T, ...], not [T, T, ...])."""
        params = {n: p.detach() for n, p in self.named_parameters[role].items()}
        own = self.task_specific[role]
        return params, {n: 0 if n in own else None for n in params}

    def _per_task_gradients(self, loss_fn, params, param_dims, *task_args):
        """One vmap pass: per-task gradients {name: [T, ...]} and the loss function's aux. A
        task argument is batched on dimension 0, or is a (pytree, its vmap dims) pair."""
        arg_dims = [arg[1] if isinstance(arg, tuple) else 0 for arg in task_args]
        args = [arg[0] if isinstance(arg, tuple) else arg for arg in task_args]
        return self._gradient_pass(loss_fn, (param_dims, *arg_dims), params, *args)

    def _gradient_pass(self, loss_fn, in_dims, params, *args):
        """torch.func.grad of ``loss_fn`` in its parameters (vmapped over tasks with ``in_dims``)
        and its aux, built once per loss and compiled with ``agent.compile``."""

        def build():
            gradient = torch.func.grad(loss_fn, has_aux=True)
            return gradient if in_dims is None else torch.func.vmap(gradient, in_dims=in_dims)

        return self._run(loss_fn.__name__, build, params, *args)

    def _run(self, key: str, build, *args):
        """``build()(*args)``, the function built once per key; with ``agent.compile`` compiled
        on its first call (seconds, once), which took ~15% off MT10 per-task passes, ~10% off
        MT1 mean updates and ~8% off MT10 TD targets here. Where compiling fails, eager."""
        function = self._passes.get(key)
        if function is not None:
            return function(*args)
        function = self._passes[key] = build()
        if not self._compiles:
            return function(*args)
        try:
            compiled = torch.compile(function, dynamic=False)
            result = compiled(*args)
        except Exception as error:  # no C++ toolchain, an unsupported op: eager still works
            warnings.warn(
                f"torch.compile of {key} failed ({type(error).__name__}); running it eagerly",
                stacklevel=2,
            )
            return function(*args)
        self._passes[key] = compiled
        return result

    @property
    def _compiles(self) -> bool:
        """``agent.compile``, unless torch.compile is off for the whole process
        (TORCH_COMPILE_DISABLE=1): then plain autograd is the faster eager way to the mean."""
        if not self.config.compile:
            return False
        import torch._dynamo  # noqa: PLC0415 (torch imports it lazily; so does this)

        return not torch._dynamo.config.disable

    def _set_and_step(
        self, role: str, grads: dict[str, torch.Tensor], losses: torch.Tensor
    ) -> bool:
        for name, param in self.named_parameters[role].items():
            param.grad = grads[name]
        return self._optimizer_step(role, losses)

    def _weighted_mean_step(self, role: str, task_losses: torch.Tensor, metrics: dict) -> bool:
        """Gradient of the method's weighted mean loss in one backward pass, then a step."""
        method = self.critic_method if role == "critic" else self.actor_method
        params = [p for p in self.named_parameters[role].values() if p.requires_grad]
        weights = method.loss_weights(task_losses.detach())  # [T]
        grads = torch.autograd.grad((weights * task_losses).mean(), params)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        if method.reports_weights:
            metrics[f"per_task/{role}_weight"] = weights
        return self._optimizer_step(role, task_losses)

    def _apply(
        self,
        role: str,
        grads: dict[str, torch.Tensor],  # name -> [T, *shape]
        task_losses: torch.Tensor,  # [T]
        diagnose: bool,
        metrics: dict,
    ) -> bool:
        """Combines the shared parameters' task gradients with the method; a task-specific
        parameter gets each task's own gradient on its own slice, untouched (scaled 1/T, as the
        gradient of the mean loss would give it)."""
        method = self.critic_method if role == "critic" else self.actor_method
        named = self.named_parameters[role]
        shared = [n for n in grads if n not in self.task_specific[role]]
        flat = [grads[n].reshape(self.num_tasks, -1) for n in shared]  # [T, P_n] views
        # The Gram matrix, summed parameter by parameter: the [T, P] matrix is never built.
        grams = [gram(g) for g in flat]  # [T, T] each, float64
        gram_matrix = torch.stack(grams).sum(0)
        layer_gram = _last_layer_gram(shared, grams, gram_matrix)
        if diagnose:
            for key, value in conflict_diagnostics(gram_matrix).items():
                metrics[key.replace("gradients/", f"gradients/{role}/")] = value
        weights = method.weights(gram_matrix, task_losses, layer_gram)  # [T]
        weights = weights.to(flat[0].dtype) if flat else weights
        for name, g in zip(shared, flat, strict=True):
            named[name].grad = (weights @ g).view_as(named[name])
        for name in grads:
            if name not in shared:
                named[name].grad = grads[name] / self.num_tasks
        if method.reports_weights and getattr(method, "last_weights", None) is not None:
            metrics[f"per_task/{role}_weight"] = method.last_weights * self.num_tasks
        return self._optimizer_step(role, task_losses)

    def _optimizer_step(self, role: str, task_losses: torch.Tensor) -> bool:
        """Steps unless a loss or gradient is non-finite (then nothing changes); returns whether
        it stepped. The check costs one host sync per step, which the safety is worth."""
        params = [p for p in self.named_parameters[role].values() if p.grad is not None]
        # One fused check of every tensor (the one mixed-precision scalers use; its "unscale" by
        # 1 leaves values as they are) instead of an isfinite + all per parameter: 1.5 ms of a
        # 12 ms update at MT1 went to those small ops.
        nonfinite = torch.zeros(1, device=self.device)
        torch._amp_foreach_non_finite_check_and_unscale_(
            [task_losses.detach().clone()] + [p.grad for p in params],
            nonfinite,
            torch.ones(1, device=self.device),
        )
        if bool(nonfinite):
            for param in params:
                param.grad = None
            return False
        if self.config.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm)
        (self.critic_optimizer if role == "critic" else self.actor_optimizer).step()
        return True

    def observe_success(self, task_index: np.ndarray, success: np.ndarray) -> None:
        """Finished training episodes' success per task, for methods driven by a KPI (DTP)."""
        for method in (self.critic_method, self.actor_method):
            if hasattr(method, "observe_kpi"):
                method.observe_kpi(torch.as_tensor(task_index), torch.as_tensor(success))

    # ------------------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        critic = parameter_count(self.critic)
        return {
            "actor": parameter_count(self.actor),
            "critic": critic,  # both twin critics
            "critic_member": critic // len(self.critic.members),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "alpha_optimizer": self.alpha_optimizer.state_dict(),
            "actor_method": self.actor_method.state_dict(),
            "critic_method": self.critic_method.state_dict(),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        self.actor_method.load_state_dict(state["actor_method"])
        self.critic_method.load_state_dict(state["critic_method"])
        self.updates = int(state.get("updates", 0))
        self.skipped_updates = int(state.get("skipped_updates", 0))
