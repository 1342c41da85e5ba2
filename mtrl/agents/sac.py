"""Multi-task SAC conditioned on the task one-hot (Yu et al. 2019's MT-SAC; Haarnoja et al. 2018).

One update reads top to bottom: TD targets for all tasks at once, the critic step, the actor step, the
per-task temperatures, the target critics. This file is the SAC maths only. Losses are kept per
task ([T], each a function of its own task's rows) and handed to the gradient engine
(``mtrl.gradients.step``), where the method (``agent.critic_grad`` / ``agent.actor_grad``) decides
how tasks share the step; with ``mean`` it is the gradient of the mean loss in one backward pass.

The 2025 critic recipe plugs in here as options: a distributional critic (``agent.critic_loss``,
the losses in ``value_losses``), per-task reward normalisation of the TD targets
(``reward_norm``), a learned task embedding (``networks.embedding``) and periodic resets.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mtrl import gradients
from mtrl.agents import value_losses
from mtrl.agents.networks import (
    bind_task_names,
    initialise,
    make_network,
    parameter_count,
    running_norms,
    task_specific_names,
    update_running_norms,
)
from mtrl.agents.reward_norm import RewardNormaliser
from mtrl.config import AgentConfig
from mtrl.gradients.compiled import Passes
from mtrl.gradients.step import GradientStep
from mtrl.replay import Batch


def _call(module: nn.Module, params: dict[str, torch.Tensor] | None, x: torch.Tensor):
    """The module on x, with its own parameters (None) or with ``params`` (torch.func)."""
    return module(x) if params is None else functional_call(module, params, (x,))


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively here (agent.precision=auto): CUDA devices that support
    bf16, CPUs with avx512_bf16 or AMX (measured here, avx512_bf16: a 2048^3 matmul 2.27x fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def finite_agent_state(state: dict[str, Any]) -> bool:
    """Whether an agent's ``state_dict`` has finite networks (parameters and running statistics)
    and temperatures: a policy with finite actions, and a checkpoint worth resuming from."""
    tensors = [state.get("log_alpha")]
    for name in ("actor", "critic", "critic_target"):
        tensors += list(state.get(name, {}).values())
    return all(
        bool(t.isfinite().all())
        for t in tensors
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


def precision_autocast(precision: str, device: torch.device) -> tuple[str, Callable]:
    """The precision that ``agent.precision`` means on ``device`` ("fp32" or "bf16") and the
    context the networks' forward (and so backward) passes run in; their outputs are cast back to
    fp32 at once."""
    bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(device))
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=bf16)
    return ("bf16" if bf16 else "fp32"), autocast


@torch.no_grad()
def act(
    actor: Actor, obs: np.ndarray, deterministic: bool, device: torch.device, autocast: Callable
) -> np.ndarray:
    """The actor's actions [T, A] in [-1, 1] for obs [T, obs_dim]: tanh of its mean, or a sample
    (without the log-probability acting never uses). Training and a loaded policy act here."""
    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(1)
    with autocast():
        mean, log_std = actor(obs_t)
    if not deterministic:
        mean = mean + log_std.exp() * torch.randn_like(mean)
    return torch.tanh(mean).squeeze(1).cpu().numpy()


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
            config.actor,
            obs_dim,
            2 * action_dim,
            num_tasks,
            config.hidden_sizes,
            embedding_dim=_embedding_dim(config),
        )
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max
        self.clip_log_std = config.log_std_bound == "clip"

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [G, B, obs], each group from one task -> mean, log std [G, B, A], in fp32 also when
        the body ran under bf16 autocast (its output is cast back before anything else)."""
        mean, log_std = self.body(obs).float().chunk(2, dim=-1)
        if self.clip_log_std:  # as McLean et al.'s and SB3's code: a fresh head gives std ~1
            return mean, log_std.clamp(self.log_std_min, self.log_std_max)
        # Soft bounds on log std (as CleanRL does) keep gradients alive at the edges.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(log_std) + 1
        )
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in [-1, 1] and its log-probability: [G, B, A], [G, B]."""
        mean, log_std = self(obs)
        return squashed_sample(mean, log_std, torch.randn_like(mean))


def _embedding_dim(config: AgentConfig) -> int:
    return config.task_embedding_dim if config.task_encoding == "embedding" else 0


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
        self.obs_dim = obs_dim
        self.precision, self.autocast = precision_autocast(config.precision, self.device)
        # mse: one Q per critic; hl_gauss / categorical: logits over the support's values.
        self.readout = value_losses.CriticReadout(
            value_losses.ValueSupport(config.critic_loss, config.bins, config.v_min, config.v_max),
            self.device,
        )
        self.actor, self.critic = self._build_networks()
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.has_running_norms = bool(running_norms(self.actor) or running_norms(self.critic))
        self.log_alpha = torch.full(
            (num_tasks,),
            math.log(config.init_temperature),
            device=self.device,
            requires_grad=True,
        )
        self.target_entropy = config.target_entropy or -float(action_dim)
        self.reward_norm = RewardNormaliser(
            config.reward_norm,
            num_tasks,
            config.gamma,
            config.v_max,
            self.target_entropy,
        )

        # Fused Adam: one kernel per step instead of ~10 small ops per parameter (measured at MT1,
        # 3 x 400, 128 samples: 12.8 -> 11.2 ms per update, where those small ops are the overhead).
        adam = functools.partial(torch.optim.Adam, fused=True, eps=config.adam_eps)
        networks_adam = adam
        if config.weight_decay:  # decoupled (AdamW), on the networks only, not the temperatures
            networks_adam = functools.partial(
                torch.optim.AdamW, fused=True, eps=config.adam_eps, weight_decay=config.weight_decay
            )
        self.actor_optimizer = networks_adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = networks_adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = adam([self.log_alpha], lr=config.alpha_lr)
        self.critic_method = gradients.make(config.critic_grad, num_tasks, seed=seed)
        self.actor_method = gradients.make(config.actor_grad, num_tasks, seed=seed + 1)
        self.passes = Passes(config.compile)  # the gradient passes and TD targets, built once
        # Task-specific parameters (heads, per-task embeddings) are never combined by a method.
        self.critic_step = GradientStep(
            "critic",
            self.critic,
            task_specific_names(self.critic),
            self.critic_method,
            self.critic_optimizer,
            self.passes,
            config.grad_clip_norm,
        )
        self.actor_step = GradientStep(
            "actor",
            self.actor,
            task_specific_names(self.actor),
            self.actor_method,
            self.actor_optimizer,
            self.passes,
            config.grad_clip_norm,
        )
        self.critic_parameters = list(self.critic.parameters())
        self.target_parameters = list(self.critic_target.parameters())
        self.updates = 0
        self.skipped_updates = 0  # updates with a non-finite loss or gradient, never applied
        self.nonfinite_inputs = 0  # task steps the running statistics left out (observe_step)
        self.consecutive_skipped = 0
        self.resets = 0
        self.reset_at = 0  # the update of the last reset

    def _build_networks(self) -> tuple[Actor, nn.Module]:
        """A fresh actor and twin critic, initialised by ``agent.init`` (also for resets)."""
        config, num_tasks = self.config, self.num_tasks
        actor = Actor(self.obs_dim, self.action_dim, num_tasks, config).to(self.device)
        # Critic input is [action, obs] so the task one-hot stays the last T features.
        critic = make_network(
            config.critic,
            self.obs_dim + self.action_dim,
            self.readout.out_dim,
            num_tasks,
            config.hidden_sizes,
            ensemble=2,
            embedding_dim=_embedding_dim(config),
        ).to(self.device)
        # McLean et al. 2025's output scales (agent.init=he_uniform): actor 1e-3, critic 3e-3.
        initialise(actor.body, config.init, output_bound=1e-3)
        initialise(critic, config.init, output_bound=3e-3)
        return actor, critic

    def bind_task_names(self, task_names: list[str]) -> None:
        """The run's task order, for the bodies that read per-task data by name (CARE's context
        file); a task that data lacks is a one-line ConfigError."""
        for network in (self.actor, self.critic, self.critic_target):
            bind_task_names(network, task_names)

    # ----------------------------------------------------------------------------------- acting
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """obs [T, obs_dim] -> actions [T, A] in [-1, 1]."""
        return act(self.actor, obs, deterministic, self.device, self.autocast)

    @property
    def has_running_statistics(self) -> bool:
        """Whether anything learns from every env step (input norms, reward normaliser)."""
        return self.has_running_norms or self.reward_norm.active

    def observe_step(
        self,
        obs: np.ndarray,  # [T, obs]
        action: np.ndarray,  # [T, A]
        reward: np.ndarray,  # [T]
        terminated: np.ndarray,  # [T]
        truncated: np.ndarray,  # [T]
    ) -> None:
        """Every env step (the random warm-up included): the running input normalisers of the
        bodies that have them (SimBa) and the reward normaliser learn from what the env gave.
        Each leaves out what is not finite; the task steps left out are counted."""
        left_out = np.zeros(self.num_tasks, dtype=bool)
        if self.reward_norm.active:
            left_out |= ~np.isfinite(reward)
        if self.has_running_norms:
            left_out |= ~(np.isfinite(obs).all(-1) & np.isfinite(action).all(-1))
        self.nonfinite_inputs += int(left_out.sum())
        self.reward_norm.observe(reward, terminated, truncated)
        if self.has_running_norms:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[:, None]
            action_t = torch.as_tensor(action, dtype=torch.float32, device=self.device)[:, None]
            critic_input = torch.cat([action_t, obs_t], -1)  # [T, 1, A + obs]
            update_running_norms(self.actor.body, obs_t)
            update_running_norms(self.critic, critic_input)
            update_running_norms(self.critic_target, critic_input)

    # ----------------------------------------------------------------------------------- update
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One SAC update on a [T, B] batch; returns detached metrics (tensors, no host sync)."""
        num_tasks, batch_size = batch.reward.shape
        self.updates += 1
        if self.updates == 1:  # the warm-up's rewards are in: ARS sets its first factors
            self.reward_norm.refresh()
        every = self.config.diagnostics_every
        diagnose = bool(every) and self.updates % every == 0
        alpha = self.log_alpha.detach().exp()  # [T]
        reward_factor = self.reward_norm.factor(alpha)  # [T]
        target = self.td_target(batch, reward_factor)  # [T, B], or [T, B, bins] (categorical)

        # Critic: both members regress on the same target.
        critic = self.critic_step(
            self.critic_losses, (batch.obs, batch.action, target), diagnose=diagnose
        )
        metrics = critic.metrics
        if not critic.stepped:  # nothing was stepped: the networks and optimisers are as they were
            self._count_skip()
            metrics["charts/nonfinite_updates"] = torch.tensor(float(self.skipped_updates))
            metrics["per_task/critic_loss"] = critic.losses
            return metrics

        # Actor: maximise min-Q plus each task's entropy bonus, through the updated critic.
        noise = torch.randn(num_tasks, batch_size, self.action_dim, device=self.device)  # [T, B, A]
        actor = self.actor_step(
            self.actor_losses, (batch.obs, noise, alpha), (self.critic_step,), diagnose
        )
        metrics.update(actor.metrics)
        task_log_prob = actor.aux  # [T]

        # Temperatures: each task's alpha tracks its own entropy target. The loss is linear in
        # log alpha, so its gradient is written down rather than taken by a backward pass.
        alpha_loss = -(self.log_alpha.detach() * (task_log_prob + self.target_entropy)).sum()
        if actor.stepped:
            self.log_alpha.grad = -(task_log_prob + self.target_entropy)
            self.alpha_optimizer.step()
            self.consecutive_skipped = 0
        else:
            self._count_skip()

        with torch.no_grad():
            torch._foreach_lerp_(self.target_parameters, self.critic_parameters, self.config.tau)
        metrics.update(
            {
                "losses/critic": critic.losses.mean(),
                "losses/actor": actor.losses.mean(),
                "losses/alpha": alpha_loss.detach() / num_tasks,
                "charts/q_mean": critic.aux.mean(),
                "charts/entropy": -task_log_prob.mean(),
                "per_task/alpha": alpha,
                "per_task/critic_loss": critic.losses,
                "per_task/actor_loss": actor.losses,
                "charts/nonfinite_updates": torch.tensor(float(self.skipped_updates)),
            }
        )
        if self.reward_norm.active:
            metrics["per_task/reward_factor"] = reward_factor
        if self.config.reset_every and self.updates % self.config.reset_every == 0:
            self.reset()
        return metrics

    def reset(self) -> None:
        """Re-initialise actor, critic, targets and their optimisers in place (the engine and
        the compiled passes hold these same tensors); replay, temperatures, the gradient methods'
        state and the input normalisers' statistics are kept. ARS refreshes its factors here."""
        actor, critic = self._build_networks()
        with torch.no_grad():
            for own, fresh in ((self.actor, actor), (self.critic, critic)):
                for param, new in zip(own.parameters(), fresh.parameters(), strict=True):
                    param.copy_(new)
            for target, param in zip(self.target_parameters, self.critic_parameters, strict=True):
                target.copy_(param)
        for optimizer in (self.actor_optimizer, self.critic_optimizer):
            optimizer.state.clear()
        self.reward_norm.refresh()
        self.resets += 1
        self.reset_at = self.updates

    def _count_skip(self) -> None:
        self.skipped_updates += 1
        self.consecutive_skipped += 1

    def td_target(self, batch: Batch, reward_factor: torch.Tensor | None = None) -> torch.Tensor:
        """Soft TD targets [T, B] (categorical: target distributions [T, B, bins]) on rewards
        times each task's normalising factor [T]: time-limit truncation bootstraps, only
        termination stops them. The policy's noise is drawn here, outside the (compiled)
        computation, so that compiling leaves the random stream as it is."""
        noise = torch.randn(*batch.reward.shape, self.action_dim, device=self.device)  # [T, B, A]
        reward = batch.reward if reward_factor is None else batch.reward * reward_factor[:, None]
        return self.passes.run(
            "_soft_td_target",
            lambda: self._soft_td_target,
            batch.next_obs,
            reward,
            batch.terminated,
            noise,
            self.log_alpha.detach(),
        )

    @torch.no_grad()
    def _soft_td_target(self, next_obs, reward, terminated, noise, log_alpha) -> torch.Tensor:
        with self.autocast():
            mean, log_std = self.actor(next_obs)
        next_action, next_log_prob = squashed_sample(mean, log_std, noise)  # [T, B, A], [T, B]
        with self.autocast():
            next_out = self.critic_target(torch.cat([next_action, next_obs], -1))
        next_out = next_out.float()  # [2, T, B, out]
        entropy = log_alpha.exp()[:, None] * next_log_prob  # [T, B]
        discount = self.config.gamma * (1.0 - terminated)  # [T, B]
        return self.readout.target(next_out, reward, discount, entropy)

    # The losses, each defined once over groups ([G, B, ...], a group per task) as a function of
    # the parameters (None: the modules' own, for plain autograd); the engine vmaps the one-group
    # version over tasks, or differentiates the (weighted) mean over groups.
    def critic_losses(
        self,
        params: dict[str, torch.Tensor] | None,
        obs: torch.Tensor,  # [G, B, obs]
        action: torch.Tensor,  # [G, B, A]
        target: torch.Tensor,  # [G, B]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group losses [G] (both twin critics fit the same target) and mean Q [G]. target is
        [G, B] (mse, hl_gauss) or a distribution [G, B, bins] (categorical)."""
        with self.autocast():
            out = _call(self.critic, params, torch.cat([action, obs], -1))
        out = out.float()  # [2, G, B, out]
        loss = self.readout.loss(out, target)  # [2, G, B]
        q = self.readout.q(out).detach()  # [2, G, B]
        return loss.sum(0).mean(-1), q.mean((0, 2))

    def actor_losses(
        self,
        params: dict[str, torch.Tensor] | None,
        obs: torch.Tensor,  # [G, B, obs]
        noise: torch.Tensor,  # [G, B, A]
        alpha: torch.Tensor,  # [G]
        critic_params: dict[str, torch.Tensor] | None,  # fixed: the loss goes through them
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group losses [G] (min-Q plus each task's entropy bonus) and mean log-prob [G]."""
        with self.autocast():
            mean, log_std = _call(self.actor, params, obs)
        action, log_prob = squashed_sample(mean, log_std, noise)  # [G, B, A], [G, B]
        with self.autocast():
            out = _call(self.critic, critic_params, torch.cat([action, obs], -1))
        q = self.readout.actor_q(out.float())
        return (alpha[:, None] * log_prob - q).mean(-1), log_prob.detach().mean(-1)

    def observe_success(self, task_index: np.ndarray, success: np.ndarray) -> None:
        """Finished training episodes' success per task, for methods driven by a KPI (DTP)."""
        for method in (self.critic_method, self.actor_method):
            method.observe(torch.as_tensor(task_index), torch.as_tensor(success))

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
            "nonfinite_inputs": self.nonfinite_inputs,
            "reward_norm": self.reward_norm.state_dict(),
            "resets": self.resets,
            "reset_at": self.reset_at,
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
        self.nonfinite_inputs = int(state.get("nonfinite_inputs", 0))
        if "reward_norm" in state:  # checkpoints before the critic recipe have none
            self.reward_norm.load_state_dict(state["reward_norm"])
        self.resets = int(state.get("resets", 0))
        self.reset_at = int(state.get("reset_at", 0))
