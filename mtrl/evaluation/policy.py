"""A trained policy loaded from a file: a training checkpoint's agent, or one task's exported path.

``mtrl eval``, ``mtrl export`` and the Python API (``mtrl.load_policy``) read policies through
here, so what a checkpoint holds is interpreted in one place.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrl.agents.networks.care import checkpoint_vectors
from mtrl.agents.precision import precision_autocast
from mtrl.agents.sac import Actor, MultiTaskSAC, act
from mtrl.config import Config, ConfigError, from_dict, validate
from mtrl.errors import UsageError
from mtrl.training.checkpoint import (
    CheckpointError,
    TrainingCheckpoint,
    latest_checkpoint,
    load_checkpoint,
    load_state,
)

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
    (a training checkpoint's, or an exported task policy's, which carries the same header). The
    config gets every check a new config gets: a file's checksum is no defence, anyone can
    recompute it."""
    if payload.get("kind") != TASK_POLICY:
        TrainingCheckpoint.from_payload(path, payload)  # refuses, in one line, what is not one
    try:
        config = validate(from_dict(payload["config"]))
        trained = [str(name) for name in payload["task_names"]]
        return config, trained, int(payload["obs_dim"]), int(payload["action_dim"])
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{path}: not a training checkpoint ({error})") from None


def _unbuildable(path: Path, payload: dict[str, Any], error: ConfigError) -> CheckpointError:
    """A checkpoint whose network or method is not registered here (a plugin not installed):
    one line, naming the plugins the run used."""
    run = payload.get("run")
    used = run.get("provenance", {}).get("plugins") if isinstance(run, dict) else None
    needs = "; ".join(
        f"{name} from {origin}" for names in (used or {}).values() for name, origin in names.items()
    )
    hint = f"; the run used plugins: {needs} (install them)" if needs else ""
    return CheckpointError(f"{path}: cannot rebuild its agent: {error}{hint}")


def load_agent(
    path: Path, payload: dict[str, Any], device: torch.device | str = "cpu"
) -> MultiTaskSAC:
    """The trained agent of a training checkpoint, with all it trains with (its gradient methods
    among them); a state that does not fit is one line. Acting needs ``load_actor`` only."""
    from mtrl.training.run import check_specs

    config, trained, obs_dim, action_dim = read_run(path, payload)
    checkpoint = TrainingCheckpoint.from_payload(path, payload)
    with checkpoint_vectors(config.agent, checkpoint.agent, trained):
        try:  # a network or method from a plugin that is not installed here: say which
            check_specs(config, num_tasks=len(trained))
        except ConfigError as error:
            raise _unbuildable(path, payload, error) from None
        agent = MultiTaskSAC(obs_dim, action_dim, len(trained), config.agent, device)
    load_state(path, agent, checkpoint.agent)
    return agent


def load_actor(path: Path, payload: dict[str, Any], device: torch.device | str = "cpu") -> Actor:
    """The trained actor of a training checkpoint: all that acting needs. Nothing else the run
    trained with is rebuilt, so a gradient method defined in the training process alone (not a
    plugin) does not stop a policy from loading elsewhere."""
    from mtrl.agents import networks

    config, trained, obs_dim, action_dim = read_run(path, payload)
    checkpoint = TrainingCheckpoint.from_payload(path, payload)
    agent = config.agent
    with checkpoint_vectors(agent, checkpoint.agent, trained):
        try:  # a network from a plugin that is not installed here: say which
            networks.check_spec("agent.actor", agent.actor, agent.hidden_sizes, len(trained))
        except ConfigError as error:
            raise _unbuildable(path, payload, error) from None
        actor = Actor(obs_dim, action_dim, len(trained), agent).to(device)
    state = checkpoint.agent.get("actor") if isinstance(checkpoint.agent, dict) else None
    load_state(path, actor, state, "actor state")
    return actor


def load_task_policy(path: Path, payload: dict[str, Any]) -> TaskPolicy:
    try:
        policy = TaskPolicy([int(size) for size in payload["layer_sizes"]])
        policy.load_state_dict(payload["policy"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: task policy does not fit ({first_line})") from None
    return policy


class Policy:
    """A trained multi-task policy, for acting on observations a user holds (``mtrl.load_policy``).

    Observations are Meta-World's (or the synthetic env's) state, ``state_dim`` wide, without the
    task one-hot: ``predict(state, task="reach-v3")`` appends the one-hot the networks were
    trained with, for one observation ``[state_dim]`` or a batch ``[N, state_dim]`` of one task;
    ``task`` may also give each row its own task (``task=np.arange(10)`` for the ten rows of
    Meta-World's MT10 vector env, or a list of names). Observations that already carry the
    one-hot (``[N, state_dim + num_tasks]``, as the ``MultiTaskVecEnv`` gives them) may mix tasks
    and take ``task=None``. Deterministic actions are tanh of the policy's mean, as every
    evaluation uses; ``deterministic=False`` samples.

    Unlike stable-baselines3's ``model.predict(obs, state=None, episode_start=None,
    deterministic=False) -> (actions, state)``: ``predict`` returns the actions alone (there is
    no recurrent state), acts deterministically unless told otherwise (an evaluation's habit,
    not exploration's), and its second argument is the task.
    """

    def __init__(
        self,
        actor,  # (obs [N, obs_dim] float32, deterministic) -> actions [N, A], numpy
        config: Config,
        trained: list[str],
        obs_dim: int,
        action_dim: int,
        tasks: list[str] | None = None,
        path: Path | None = None,
        step: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self._actor = actor
        self.config = config
        self.trained_tasks = list(trained)  # the one-hot's tasks, in order
        self.task_names = list(tasks) if tasks is not None else list(trained)  # what it can act on
        self.num_tasks = len(trained)
        self.obs_dim = obs_dim
        self.state_dim = obs_dim - self.num_tasks
        self.action_dim = action_dim
        self.path = path
        self.step = step
        self.device = torch.device(device)

    def __repr__(self) -> str:
        where = f", from {self.path}" if self.path else ""
        return (
            f"Policy({len(self.task_names)} tasks, state_dim={self.state_dim}, "
            f"action_dim={self.action_dim}{where})"
        )

    def task_index(self, task: str | int) -> int:
        """A task's position in the one-hot, from its name or its index in ``task_names``."""
        if isinstance(task, (int, np.integer)) and not isinstance(task, bool):
            if not 0 <= task < len(self.task_names):
                raise UsageError(
                    f"task index {task} is out of range (0..{len(self.task_names) - 1})"
                )
            task = self.task_names[int(task)]
        if task not in self.task_names:
            raise UsageError(
                f"the policy was not trained on {task!r}; its tasks: {', '.join(self.task_names)}"
            )
        return self.trained_tasks.index(str(task))

    def row_tasks(self, task: Any, rows: int) -> np.ndarray:
        """Each row's position in the one-hot [rows], from one task for all rows or one per
        row (names or indices in ``task_names``)."""
        if isinstance(task, (str, int, np.integer)):
            return np.full(rows, self.task_index(task))
        tasks = np.asarray(task)
        if tasks.ndim != 1 or len(tasks) != rows:
            raise UsageError(
                f"task must be one task or one per observation ({rows}), got shape {tasks.shape}"
            )
        if tasks.dtype.kind not in "iuU":
            raise UsageError(f"tasks are names or indices, got {tasks.dtype} values")
        positions = {value: self.task_index(value.item()) for value in np.unique(tasks)}
        return np.array([positions[value] for value in tasks], dtype=np.int64)

    def with_one_hot(self, obs: np.ndarray, task: Any) -> np.ndarray:
        """``obs`` as the networks read it: [N, state_dim + num_tasks] float32."""
        array = np.asarray(obs, dtype=np.float32)
        if array.ndim not in (1, 2):
            raise UsageError(f"obs must be [state_dim] or [N, state_dim], got shape {array.shape}")
        rows = array.reshape(1, -1) if array.ndim == 1 else array
        width = rows.shape[1]
        if task is None:
            if width != self.obs_dim:
                raise UsageError(
                    f"obs has {width} features: pass task= for a state of {self.state_dim}, "
                    f"or observations with the one-hot ({self.obs_dim})"
                )
            return rows
        if width != self.state_dim:
            raise UsageError(
                f"with task= the obs is the state alone: {self.state_dim} features, got {width}"
            )
        one_hot = np.zeros((len(rows), self.num_tasks), dtype=np.float32)
        one_hot[np.arange(len(rows)), self.row_tasks(task, len(rows))] = 1.0
        return np.concatenate([rows, one_hot], axis=1)

    def predict(
        self,
        obs: np.ndarray,
        task: str | int | list[str] | np.ndarray | None = None,
        deterministic: bool = True,
    ) -> np.ndarray:
        """Actions in [-1, 1]: [action_dim] for one observation, [N, action_dim] for a batch;
        the array alone, not stable-baselines3's (actions, state), and deterministic by default
        (the class says how else it differs). ``task``: a name or index for every row, one per
        row, or None for observations that end with their one-hot."""
        rows = self.with_one_hot(obs, task)
        if task is None:  # the one-hots' tasks must be ones this policy acts on
            for index in np.unique(rows[:, self.state_dim :].argmax(axis=1)):
                self.task_index(self.trained_tasks[int(index)])
        actions = self._actor(rows, deterministic)
        return actions[0] if np.asarray(obs).ndim == 1 else actions

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The evaluation loop's policy: one-hot observations [N, obs_dim] -> deterministic
        actions, for every row (a synthetic set steps tasks an exported policy does not report)."""
        return self._actor(np.asarray(obs, dtype=np.float32), True)


def load_policy(path: str | Path, device: str = "auto") -> Policy:
    """The policy of a checkpoint file, a run directory (its latest checkpoint) or an exported
    task policy (``mtrl export``); an untrusted or broken file is refused in one line."""
    from mtrl.training.run import resolve_device

    path, payload = load_training_checkpoint(Path(path))
    config, trained, obs_dim, action_dim = read_run(path, payload)
    step = payload.get("step")
    if payload.get("kind") == TASK_POLICY:  # one task's exported path
        task_policy = load_task_policy(path, payload)

        def act_task(obs: np.ndarray, deterministic: bool) -> np.ndarray:
            if not deterministic:
                raise UsageError("an exported task policy acts deterministically only")
            return task_policy.act(torch.as_tensor(obs)).numpy()

        task = str(payload.get("task"))
        return Policy(act_task, config, trained, obs_dim, action_dim, [task], path, step)
    device = resolve_device(device)
    actor = load_actor(path, payload, device)
    _, autocast = precision_autocast(config.agent.precision, device)

    def act_all(obs: np.ndarray, deterministic: bool) -> np.ndarray:
        return act(actor, obs, deterministic, device, autocast)

    return Policy(act_all, config, trained, obs_dim, action_dim, None, path, step, device)
