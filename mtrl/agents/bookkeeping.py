"""What a multi-task SAC agent keeps besides its maths: counters of updates, skipped updates and
resets, the running statistics it learns from every env step, the periodic resets' schedule, and
its state for a checkpoint. ``MultiTaskSAC`` inherits it, so that ``agents/sac.py`` reads as the
update alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mtrl.agents.networks import (
    bind_task_names,
    parameter_count,
    reset_diverging_tasks,
    resettable_bodies,
    running_norms,
    update_running_norms,
)
from mtrl.agents.plasticity import plasticity_metrics

# The agent's parts a checkpoint holds by their own state_dict, and its plain counters.
STATEFUL_PARTS = (
    "actor",
    "critic",
    "critic_target",
    "actor_optimizer",
    "critic_optimizer",
    "alpha_optimizer",
)
# The gradient methods' state, held with the engine's schedule (a method solved every k updates)
# by each role's step: checkpoint key -> the step's attribute.
METHOD_STEPS = {"actor_method": "actor_step", "critic_method": "critic_step"}
COUNTERS = ("updates", "skipped_updates", "nonfinite_inputs", "resets", "reset_at", "paco_resets")


class AgentBookkeeping:
    """Needs the agent's ``actor``, ``critic``, ``critic_target`` (with ``target_parameters`` and
    ``critic_parameters``), ``log_alpha``, optimisers, gradient methods, ``reward_norm``,
    ``config``, ``device``, ``num_tasks`` and ``_build_networks``; ``start_bookkeeping`` once
    they exist."""

    def start_bookkeeping(self) -> None:
        self.has_running_norms = bool(running_norms(self.actor) or running_norms(self.critic))
        self.updates = 0
        self.skipped_updates = 0  # updates with a non-finite loss or gradient, never applied
        self.nonfinite_inputs = 0  # task steps the running statistics left out (observe_step)
        self.consecutive_skipped = 0
        self.resets = 0
        self.reset_at = 0  # the update of the last reset
        self.paco_bodies = resettable_bodies(self.actor, self.critic, self.critic_target)
        self.paco_resets = 0  # tasks whose PaCo vectors were reset (paco:reset_threshold)

    def count_skip(self) -> None:
        self.skipped_updates += 1
        self.consecutive_skipped += 1

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

    def bind_task_names(self, task_names: list[str]) -> None:
        """The run's task order, for the bodies that read per-task data by name (CARE's context
        file); a task that data lacks is a one-line ConfigError."""
        for network in (self.actor, self.critic, self.critic_target):
            bind_task_names(network, task_names)

    def observe_success(self, task_index: np.ndarray, success: np.ndarray) -> None:
        """Finished training episodes' success per task, for methods driven by a KPI (DTP)."""
        for method in (self.critic_method, self.actor_method):
            method.observe(torch.as_tensor(task_index), torch.as_tensor(success))

    def after_update(self, metrics: dict[str, torch.Tensor], obs: torch.Tensor, diagnose: bool):
        """At a diagnostics update, the plasticity of the networks just updated (on the batch's
        observations [T, B, obs]); then PaCo's reset of the tasks whose critic loss diverged
        (``paco:reset_threshold``); then ``agent.reset_every``'s reset, after every that many
        updates (0: never)."""
        if diagnose:
            metrics.update(
                plasticity_metrics(self.actor, self.critic, obs, self.config.dormant_threshold)
            )
        if self.paco_bodies:
            losses = metrics["per_task/critic_loss"]
            self.paco_resets += reset_diverging_tasks(self.paco_bodies, losses)
            metrics["charts/paco_resets"] = torch.tensor(float(self.paco_resets))
        if self.config.reset_every and self.updates % self.config.reset_every == 0:
            self.reset()

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

    def parameter_counts(self) -> dict[str, int]:
        critic = parameter_count(self.critic)
        return {
            "actor": parameter_count(self.actor),
            "critic": critic,  # both twin critics
            "critic_member": critic // len(self.critic.members),
        }

    def state_dict(self) -> dict[str, Any]:
        state = {part: getattr(self, part).state_dict() for part in STATEFUL_PARTS}
        state |= {
            key: getattr(self, step).method_state_dict() for key, step in METHOD_STEPS.items()
        }
        state["log_alpha"] = self.log_alpha.detach().clone()
        state["reward_norm"] = self.reward_norm.state_dict()
        return state | {counter: getattr(self, counter) for counter in COUNTERS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for part in STATEFUL_PARTS:
            getattr(self, part).load_state_dict(state[part])
        for key, step in METHOD_STEPS.items():
            getattr(self, step).load_method_state_dict(state[key])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if "reward_norm" in state:  # checkpoints before the critic recipe have none
            self.reward_norm.load_state_dict(state["reward_norm"])
        for counter in COUNTERS:  # older checkpoints lack some: they start at 0
            setattr(self, counter, int(state.get(counter, 0)))
