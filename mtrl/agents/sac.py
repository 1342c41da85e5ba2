"""Multi-task SAC conditioned on the task one-hot (Yu et al. 2019's MT-SAC; Haarnoja et al. 2018).

One update reads top to bottom: TD targets for all tasks at once, the critic step, the actor step, the
per-task temperatures, the target critics. Losses are kept per task ([T]) so that the gradient method
(``agent.critic_grad`` / ``agent.actor_grad``) decides how tasks share the step; with ``mean`` the
result is the gradient of the mean loss, taken in one backward pass.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtrl import gradients
from mtrl.agents.networks import make_network, parameter_count
from mtrl.config import AgentConfig


@dataclass(frozen=True)
class Batch:
    """A stratified replay batch: B transitions of every task, laid out [T, B, ...]."""

    obs: torch.Tensor  # [T, B, obs_dim]
    action: torch.Tensor  # [T, B, A]
    reward: torch.Tensor  # [T, B]
    next_obs: torch.Tensor  # [T, B, obs_dim]
    terminated: torch.Tensor  # [T, B] float: 1 where the episode truly ended


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy; its body is any network of the registry."""

    def __init__(self, obs_dim: int, action_dim: int, num_tasks: int, config: AgentConfig) -> None:
        super().__init__()
        self.body = make_network(
            config.actor, obs_dim, 2 * action_dim, num_tasks, config.hidden_sizes
        )
        self.log_std_min, self.log_std_max = config.log_std_min, config.log_std_max

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.body(obs)[0].chunk(2, dim=-1)  # [N, A] each
        # Soft bounds on log std (as CleanRL and SpinningUp do) keep gradients alive at the edges.
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(log_std) + 1
        )
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in [-1, 1] and its log-probability: [N, A], [N]."""
        mean, log_std = self(obs)
        noise = torch.randn_like(mean)
        pre_tanh = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) in a form that stays finite for large |u|.
        log_prob = log_prob - (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), log_prob


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
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.full(
            (num_tasks,),
            math.log(config.init_temperature),
            device=self.device,
            requires_grad=True,
        )
        self.target_entropy = config.target_entropy or -float(action_dim)

        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)
        self.critic_method = gradients.make(config.critic_grad, num_tasks, seed=seed)
        self.actor_method = gradients.make(config.actor_grad, num_tasks, seed=seed + 1)

    # ----------------------------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """obs [T, obs_dim] -> actions [T, A] in [-1, 1]."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        if deterministic:
            return torch.tanh(self.actor(obs_t)[0]).cpu().numpy()
        return self.actor.sample(obs_t)[0].cpu().numpy()

    # ----------------------------------------------------------------------------------- update
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One SAC update on a [T, B] batch; returns detached metrics (tensors, no host sync)."""
        num_tasks, batch_size = batch.reward.shape
        obs = batch.obs.flatten(0, 1)  # [TB, obs]
        action = batch.action.flatten(0, 1)  # [TB, A]
        alpha = self.log_alpha.detach().exp()  # [T]
        alpha_rows = alpha.repeat_interleave(batch_size)  # [TB]

        target = self.td_target(batch)  # [TB]

        # Critic: both members regress on the same target.
        q = self.critic(torch.cat([action, obs], -1)).squeeze(-1)  # [2, TB]
        critic_row_loss = (q - target).pow(2).sum(0)  # [TB]
        critic_task_losses = critic_row_loss.view(num_tasks, batch_size).mean(1)  # [T]
        self._step(self.critic, self.critic_optimizer, self.critic_method, critic_task_losses)

        # Actor: maximise min-Q plus each task's entropy bonus, through the updated critic.
        new_action, log_prob = self.actor.sample(obs)  # [TB, A], [TB]
        q_new = self.critic(torch.cat([new_action, obs], -1)).amin(0).squeeze(-1)  # [TB]
        actor_row_loss = alpha_rows * log_prob - q_new  # [TB]
        actor_task_losses = actor_row_loss.view(num_tasks, batch_size).mean(1)  # [T]
        self._step(self.actor, self.actor_optimizer, self.actor_method, actor_task_losses)

        # Temperatures: each task's alpha tracks its own entropy target.
        task_log_prob = log_prob.detach().view(num_tasks, batch_size).mean(1)  # [T]
        alpha_loss = -(self.log_alpha * (task_log_prob + self.target_entropy)).sum()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.critic_target.parameters()),
                list(self.critic.parameters()),
                self.config.tau,
            )
        return {
            "losses/critic": critic_task_losses.detach().mean(),
            "losses/actor": actor_task_losses.detach().mean(),
            "losses/alpha": alpha_loss.detach() / num_tasks,
            "losses/critic_per_task": critic_task_losses.detach(),
            "losses/actor_per_task": actor_task_losses.detach(),
            "charts/q_mean": q.detach().mean(),
            "charts/entropy": -log_prob.detach().mean(),
            "charts/alpha_per_task": alpha,
        }

    @torch.no_grad()
    def td_target(self, batch: Batch) -> torch.Tensor:
        """Soft TD targets [TB]: time-limit truncation bootstraps, only termination stops them."""
        batch_size = batch.reward.shape[1]
        next_obs = batch.next_obs.flatten(0, 1)  # [TB, obs]
        alpha_rows = self.log_alpha.exp().repeat_interleave(batch_size)  # [TB]
        next_action, next_log_prob = self.actor.sample(next_obs)
        next_q = self.critic_target(torch.cat([next_action, next_obs], -1)).amin(0)  # [TB, 1]
        soft_next_value = next_q.squeeze(-1) - alpha_rows * next_log_prob  # [TB]
        not_done = 1.0 - batch.terminated.flatten()
        return batch.reward.flatten() + self.config.gamma * not_done * soft_next_value

    def _step(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        method: gradients.GradientMethod,
        task_losses: torch.Tensor,  # [T]
    ) -> None:
        """Gradient of the method's weighted mean loss for ``module`` only, then an optimiser step."""
        params = [p for p in module.parameters() if p.requires_grad]
        weights = method.loss_weights(task_losses.detach())  # [T]
        loss = (weights * task_losses).mean()
        grads = torch.autograd.grad(loss, params)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        if self.config.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm)
        optimizer.step()

    # ------------------------------------------------------------------------------ bookkeeping
    def parameter_counts(self) -> dict[str, int]:
        return {"actor": parameter_count(self.actor), "critic": parameter_count(self.critic)}

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
