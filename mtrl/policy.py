"""A trained policy loaded from a file: a training checkpoint's agent, or one task's exported path.

``mtrl eval``, ``mtrl export`` (and the Python API to come) read policies through here, so what a
checkpoint holds is interpreted in one place.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtrl.agents.sac import MultiTaskSAC
from mtrl.checkpoint import (
    CheckpointError,
    TrainingCheckpoint,
    latest_checkpoint,
    load_checkpoint,
)
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
    """The run's config, task names, observation and action sizes, from a checkpoint payload
    (a training checkpoint's, or an exported task policy's, which carries the same header)."""
    if payload.get("kind") != TASK_POLICY:
        TrainingCheckpoint.from_payload(path, payload)  # refuses, in one line, what is not one
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
    checkpoint = TrainingCheckpoint.from_payload(path, payload)
    agent = MultiTaskSAC(obs_dim, action_dim, len(trained), config.agent, device)
    try:
        agent.load_state_dict(checkpoint.agent)
    except (KeyError, RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: agent state does not fit ({first_line})") from None
    return agent


def load_task_policy(path: Path, payload: dict[str, Any]) -> TaskPolicy:
    try:
        policy = TaskPolicy([int(size) for size in payload["layer_sizes"]])
        policy.load_state_dict(payload["policy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: task policy does not fit ({first_line})") from None
    return policy
