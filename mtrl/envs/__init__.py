"""The env registry: one name string -> a ``MultiTaskVecEnv`` over T tasks.

Names: ``"synthetic"`` (4 point-mass tasks) or ``"synthetic:<T>"``; ``"synthetic-scaled:<T>"``, the
same tasks with task i's reward multiplied by 10^i (reward scales as far apart as Meta-World v1's, so
reward normalisation has a test that runs in seconds); and every Meta-World spec
(``"MT10"``, ``"MT25"``, ``"MT50"``, ``"MT1:<task>"``, ``"reach-v3,push-v3"``). Meta-World is
imported only when a Meta-World name is used, so ``import mtrl.envs`` and the synthetic env never
load mujoco.
"""

from __future__ import annotations

import numpy as np

from mtrl.envs.base import EnvError, MultiTaskVecEnv, VecStep
from mtrl.envs.gymnasium_tasks import GymnasiumTasks
from mtrl.envs.synthetic import DEFAULT_MAX_EPISODE_STEPS as SYNTHETIC_MAX_EPISODE_STEPS
from mtrl.envs.synthetic import SyntheticVecEnv
from mtrl.errors import ConfigError
from mtrl.limits import MAX_TASKS

__all__ = [
    "EnvError",
    "episode_steps",
    "GymnasiumTasks",
    "MultiTaskVecEnv",
    "SyntheticVecEnv",
    "VecStep",
    "is_metaworld",
    "make_env",
    "resolve_task_names",
]

SYNTHETIC = "synthetic"
SYNTHETIC_SCALED = "synthetic-scaled"
SYNTHETIC_DEFAULT_TASKS = 4
METAWORLD_MAX_EPISODE_STEPS = 500  # = metaworld.DEFAULT_MAX_EPISODE_STEPS, without importing mujoco


def is_metaworld(name: str) -> bool:
    """Whether a name belongs to the Meta-World suite (everything not synthetic nor custom)."""
    return name.strip().split(":")[0].lower() not in (SYNTHETIC, SYNTHETIC_SCALED, "custom")


def episode_steps(name: str, configured: int | None = 0) -> int:
    """The episode length a run of ``name`` uses: ``configured``, or the suite's own (0/None)."""
    if configured:
        return int(configured)
    return METAWORLD_MAX_EPISODE_STEPS if is_metaworld(name) else SYNTHETIC_MAX_EPISODE_STEPS


def resolve_task_names(name: str) -> list[str]:
    """Task names in env order, without building anything (config validation, logging keys)."""
    if not is_metaworld(name):
        return [f"point-{i}" for i in range(_synthetic_num_tasks(name))]
    from mtrl.envs.metaworld import resolve_metaworld_tasks

    return resolve_metaworld_tasks(name)


CUSTOM = "custom:"  # env.name of a run on a user's env object (mtrl.train(env=...))


def is_custom(name: str) -> bool:
    return name.startswith(CUSTOM)


def check_spec(name: str) -> int:
    """``env.name``'s number of tasks, or a one-line ConfigError naming the key."""
    if is_custom(name):
        raise ConfigError(
            f"env.name: '{name}' is a user's env object, which mtrl cannot build by name; start "
            "or resume such a run from Python: mtrl.train(..., env=your_env)"
        )
    try:
        return len(resolve_task_names(name))
    except EnvError as error:
        raise ConfigError(f"env.name: {error}") from None


def make_env(
    name: str,
    seed: int,
    *,
    reward_version: str = "v2",
    max_episode_steps: int | None = None,
    vector: str = "sync",
    render: bool = False,
    goal_seed: int | None = None,
    tasks: list[str] | None = None,
    workers: int = 0,
) -> MultiTaskVecEnv:
    """Builds the named task set; ``max_episode_steps=None`` means the suite's own default.

    ``goal_seed`` (Meta-World; default ``seed``) fixes the 50 goals per task apart from ``seed``, so
    an evaluation env can run the training goals on its own random stream. The synthetic env has
    fixed goals and one reward and is vectorised in numpy, so it ignores ``goal_seed``,
    ``reward_version``, ``vector`` and ``render`` (it can always render).
    """
    if vector not in ("sync", "async", "sharded"):
        raise EnvError(f"vector must be 'sync', 'async' or 'sharded', got {vector!r}")
    if not is_metaworld(name):
        steps = SYNTHETIC_MAX_EPISODE_STEPS if max_episode_steps is None else max_episode_steps
        num_tasks = _synthetic_num_tasks(name)
        scaled = name.strip().split(":")[0].lower() == SYNTHETIC_SCALED
        scales = 10.0 ** np.arange(num_tasks) if scaled else None  # task i: x 10^i
        return SyntheticVecEnv(num_tasks, seed=seed, max_episode_steps=steps, reward_scales=scales)
    from mtrl.envs.metaworld import make_metaworld_env

    return make_metaworld_env(
        name,
        seed,
        reward_version=reward_version,
        max_episode_steps=METAWORLD_MAX_EPISODE_STEPS
        if max_episode_steps is None
        else max_episode_steps,
        vector=vector,
        workers=workers,
        render=render,
        goal_seed=goal_seed,
        tasks=tasks,
    )


def _synthetic_num_tasks(name: str) -> int:
    _, colon, count = name.strip().partition(":")
    if not colon:
        return SYNTHETIC_DEFAULT_TASKS
    if not count.strip().isdigit() or int(count) < 1:
        raise EnvError(
            f"bad synthetic env {name!r}; use 'synthetic', 'synthetic:<T>' or "
            "'synthetic-scaled:<T>' with T >= 1"
        )
    if int(count) > MAX_TASKS:
        raise EnvError(f"synthetic env {name!r}: at most {MAX_TASKS:,} tasks (mtrl.limits)")
    return int(count)
