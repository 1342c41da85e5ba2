"""``mtrl export``: one task's path of a task-routed policy as a small stand-alone policy file.

A task-routed actor (``agent.actor=task_routed``) gives each task a plain MLP through the shared and
own layers; deploying one task needs only that MLP, not the other tasks' layers or the critics. The
exported file uses the checkpoint format (hash-checked, safe unpickling) with ``kind: task_policy``,
and ``mtrl eval`` reads it like a training checkpoint.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtrl.agents.networks.task_routed import TaskRoutedBody
from mtrl.agents.sac import MultiTaskSAC
from mtrl.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from mtrl.config import Config, ConfigError, from_dict

TASK_POLICY = "task_policy"


class TaskPolicy(nn.Module):
    """Linear/ReLU layers to [mean, log std]; acts deterministically as tanh(mean)."""

    def __init__(self, layer_sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for a, b in pairwise(layer_sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [N, obs] -> deterministic actions [N, A] in [-1, 1]."""
        mean, _ = self.net(obs).chunk(2, dim=-1)
        return torch.tanh(mean)


def load_training_checkpoint(path: Path) -> tuple[Path, dict[str, Any]]:
    path = latest_checkpoint(path) if path.is_dir() else path
    return path, load_checkpoint(path)


def read_run(path: Path, payload: dict[str, Any]) -> tuple[Config, list[str], int, int]:
    """The run's config, task names, observation and action sizes, from a checkpoint payload."""
    try:
        config = from_dict(payload["config"])
        trained = [str(name) for name in payload["task_names"]]
        return config, trained, int(payload["obs_dim"]), int(payload["action_dim"])
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{path}: not a training checkpoint ({error})") from None


def load_agent(
    path: Path, payload: dict[str, Any], device: torch.device | str = "cpu"
) -> MultiTaskSAC:
    """The trained agent of a training checkpoint; a state that does not fit is one line."""
    config, trained, obs_dim, action_dim = read_run(path, payload)
    agent = MultiTaskSAC(obs_dim, action_dim, len(trained), config.agent, device)
    try:
        agent.load_state_dict(payload["agent"])
    except (KeyError, RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: agent state does not fit ({first_line})") from None
    return agent


def export_task_policy(checkpoint: str | Path, task: str, out: str | Path) -> Path:
    path, payload = load_training_checkpoint(Path(checkpoint))
    if payload.get("kind") == TASK_POLICY:
        raise ConfigError(f"{path} is already an exported task policy")
    config, trained, obs_dim, action_dim = read_run(path, payload)
    if task not in trained:
        raise ConfigError(f"the policy was not trained on {task}; its tasks: {', '.join(trained)}")
    if not config.agent.actor.startswith("task_routed"):
        raise ConfigError(
            f"agent.actor is '{config.agent.actor}': only a task_routed actor has one task's "
            "path to export (train with agent.actor=task_routed)"
        )
    agent = load_agent(path, payload)
    assert isinstance(agent.actor.body, TaskRoutedBody)
    path_mlp = agent.actor.body.extract(trained.index(task))
    linears = [m for m in path_mlp if isinstance(m, nn.Linear)]
    layer_sizes = [linears[0].in_features] + [m.out_features for m in linears]
    policy = TaskPolicy(layer_sizes)
    policy.net.load_state_dict(path_mlp.state_dict())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        out,
        {
            "kind": TASK_POLICY,
            "task": task,
            "task_names": trained,
            "config": payload["config"],
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "step": payload.get("step"),
            "layer_sizes": layer_sizes,
            "policy": policy.state_dict(),
        },
    )
    return out


def load_task_policy(path: Path, payload: dict[str, Any]) -> TaskPolicy:
    try:
        policy = TaskPolicy([int(size) for size in payload["layer_sizes"]])
        policy.load_state_dict(payload["policy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: task policy does not fit ({first_line})") from None
    return policy
