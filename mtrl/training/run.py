"""What a run is made of, before and after it trains, whichever trainer runs it: the config it may
start from (``build_run_config``: plain values, each registry's names, and a refusal of a run that
would never update), where it goes by default, the torch settings of its process and its share of
the machine's cores, its envs as the config sets them (the evaluation env on its own seed stream),
and the evaluation protocol that ``mtrl report`` compares before it puts runs in one table. What
happens while a run holds its directory (lock, run.json, logs, signals, failures) is
``mtrl.training.session``'s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from mtrl import envs, gradients
from mtrl.agents import networks
from mtrl.config import Config, build_config
from mtrl.envs import episode_steps, is_metaworld, make_env, resolve_task_names
from mtrl.envs.base import MultiTaskVecEnv
from mtrl.errors import ConfigError, RunError
from mtrl.evaluation.protocol import EVAL_SEED_OFFSET, GOAL_SCHEME
from mtrl.extras import require
from mtrl.training import tracking
from mtrl.training.cores import CoreShare

# The protocol fields that must agree for runs to share a table (seeds and sizes may differ).
COMPARED_PROTOCOL_FIELDS = (
    "env",
    "reward_version",
    "max_episode_steps",
    "final_eval_episodes",
    "goal_scheme",
    "steps_per_task",
)


def check_specs(config: Config, num_tasks: int | None = None) -> Config:
    """The names of registered things in a config, each checked by its own registry (env and
    tasks, gradient methods, networks with their options, widths and initialisation): one
    ConfigError line for the first bad one. ``config.validate`` checks plain values. A run on a
    user's env object (``num_tasks`` given) has no env name to check."""
    if num_tasks is None:
        num_tasks = envs.check_spec(config.env.name)
    agent = config.agent
    for key, spec in (
        ("agent.actor_grad", agent.actor_grad),
        ("agent.critic_grad", agent.critic_grad),
    ):
        gradients.check_spec(key, spec)
    bodies = (
        ("agent.actor", agent.actor, 2 * 4),  # mean and log std of up to 4 actions
        ("agent.critic", agent.critic, 1 if agent.critic_loss == "mse" else agent.bins),
    )
    for key, spec, _ in bodies:  # every size bounded before any body is built
        networks.check_sizes(key, spec, agent.hidden_sizes)
    embedding = agent.task_embedding_dim if agent.task_encoding == "embedding" else 0
    for key, spec, outputs in bodies:
        networks.check_spec(
            key, spec, agent.hidden_sizes, num_tasks, agent.init, outputs, embedding
        )
    tracking.check_available(config)
    if config.eval_video_every:
        require("imageio", "eval_video_every")
    if config.agent.algorithm == "independent":
        require("stable_baselines3", "agent.algorithm=independent")
    return config


def check_updates(config: Config) -> Config:
    """Refuses a run that would never update its networks: it would "finish" untrained, with
    exit 0. Run configs only: a finished run's saved config is never refused by this."""
    agent = config.agent
    if config.warmup_steps >= config.total_steps:
        raise ConfigError(
            f"warmup_steps ({config.warmup_steps}) >= total_steps ({config.total_steps}): the "
            "run would end before its first update"
        )
    if agent.algorithm == "independent":  # SB3 updates every step past its warm-up
        return config
    if config.replay_capacity_per_task < agent.batch_size_per_task:
        raise ConfigError(
            f"replay_capacity_per_task ({config.replay_capacity_per_task}) < "
            f"agent.batch_size_per_task ({agent.batch_size_per_task}): the replay never holds "
            "one batch, so the run would never update"
        )
    if agent.batch_size_per_task > config.total_steps:
        raise ConfigError(
            f"agent.batch_size_per_task ({agent.batch_size_per_task}) > total_steps "
            f"({config.total_steps}): the replay never holds one batch, so the run would never "
            "update"
        )
    # The trainer's loop: steps from max(warm-up, batch - 1) on may update, each adding
    # updates_per_step to a credit that must reach 1 (summed as the loop sums it).
    steps = config.total_steps - max(config.warmup_steps, agent.batch_size_per_task - 1)
    credit = steps * config.updates_per_step
    if abs(credit - 1.0) < 1e-6:
        credit = 0.0
        for _ in range(steps):
            credit += config.updates_per_step
    if credit < 1.0:
        raise ConfigError(
            f"updates_per_step={config.updates_per_step} over the {steps} steps that may update "
            "gives no update (raise it, or total_steps)"
        )
    return config


def build_run_config(preset: str | Path | None, overrides: list[str] | None = None) -> Config:
    """``config.build_config``, the registries' checks and ``check_updates``: the config a run may
    start from."""
    return check_specs(check_updates(build_config(preset, overrides)))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    return torch.device(name)


def protocol(
    config: Config, parameter_counts: dict[str, int], env: MultiTaskVecEnv | None = None
) -> dict[str, Any]:
    """How the run's numbers were made: what ``mtrl report`` checks before comparing runs. A
    user's env object (``env``, named ``custom:<class>``) says its own size and episode length."""
    metaworld = is_metaworld(config.env.name)
    custom = env is not None and envs.is_custom(config.env.name)
    return {
        "env": config.env.name,
        "tasks": env.num_tasks if custom else len(resolve_task_names(config.env.name)),
        "reward_version": config.env.reward_version if metaworld else None,
        "max_episode_steps": getattr(env, "max_episode_steps", None)
        if custom
        else episode_steps(config.env.name, config.env.max_episode_steps),
        "eval_episodes": config.eval_episodes,
        "final_eval_episodes": config.final_eval_episodes,
        "goal_scheme": GOAL_SCHEME,
        "steps_per_task": config.total_steps,
        "seed": config.seed,
        "actor_parameters": int(parameter_counts["actor"]),
        "critic_parameters": int(parameter_counts["critic"]),
    }


def configure_torch(config: Config) -> torch.device:
    """Threads, determinism and float handling for a training process; returns its device.

    Denormal floats are flushed to zero: tiny gradients and Adam moments turn denormal as a run
    goes on, and CPU arithmetic on them is slow enough to slow a run down (docs/benchmarks.md).
    """
    device = resolve_device(config.device)
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    if device.type == "cuda" and config.agent.precision != "fp32":
        torch.set_float32_matmul_precision("high")  # TF32 for what stays fp32 (the Gram matrices)
    torch.set_flush_denormal(True)
    return device


def share_cores(config: Config) -> CoreShare:
    """The run's place among the machine's training processes (call after ``configure_torch``):
    with ``torch_threads=0`` and not deterministic it takes its share of the cores as other runs
    start and end; otherwise it keeps its threads and warns where they oversubscribe."""
    return CoreShare(
        adapt=config.torch_threads == 0 and not config.deterministic,
        get_threads=torch.get_num_threads,
        set_threads=torch.set_num_threads,
    )


def default_run_dir(config: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = config.env.name.replace(":", "-").replace(",", "+")[:60]
    return Path("runs") / f"{name}-seed{config.seed}-{stamp}"


def env_options(config: Config, vectorised: bool = True) -> dict[str, Any]:
    """``make_env``'s options as the config sets them; a training run's envs (and its periodic
    evaluations) also take its vectorisation."""
    options: dict[str, Any] = {
        "reward_version": config.env.reward_version,
        "max_episode_steps": config.env.max_episode_steps or None,
    }
    if vectorised:
        options |= {"vector": config.env.vector, "workers": config.env.workers}
    return options


def make_eval_env(
    config: Config,
    seed: int | None = None,
    tasks: list[str] | None = None,
    render: bool = False,
    vectorised: bool = False,
) -> MultiTaskVecEnv:
    """A run's evaluation env. Start states come from a stream training never sees (the run's
    seed + EVAL_SEED_OFFSET, unless ``seed``); Meta-World runs its training goals (``goal_seed``,
    its MT protocol) and may be cut to ``tasks``. A synthetic set always steps all its tasks
    (they are defined by their index among all). A fresh one per evaluation gives every
    evaluation the same start states, and a resumed run evaluates as an uninterrupted one."""
    seed = config.seed + EVAL_SEED_OFFSET if seed is None else seed
    options = env_options(config, vectorised) | ({"render": True} if render else {})
    if is_metaworld(config.env.name):
        return make_env(config.env.name, seed, goal_seed=config.seed, tasks=tasks, **options)
    return make_env(config.env.name, seed, **options)
