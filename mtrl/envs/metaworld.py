"""Meta-World v3 task sets (MT1, MT10, MT25, MT50, custom lists) as one ``MultiTaskVecEnv``.

We wrap each task's environment ourselves instead of calling ``gym.make_vec("Meta-World/...")``:
that keeps the observation float32 with unbounded bounds (the declared goal bounds are [0, 0], which
is wrong), gives every task its own seed, and lets the one place that reads ``final_info`` decide
what ``success`` means on the step where an episode ends (that step's own info has no success).
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import re
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import metaworld
import numpy as np
from metaworld import env_dict
from metaworld.types import Task
from metaworld.wrappers import AutoTerminateOnSuccessWrapper, RandomTaskSelectWrapper

from mtrl.envs.base import EnvError, VecStep
from mtrl.envs.sharded import PARENT_GONE, ShardedVecEnv
from mtrl.specs import suggest

STATE_DIM = 39  # hand (4) + objects (14), the same again for the previous frame, goal (3)
ACTION_DIM = 4
DEFAULT_MAX_EPISODE_STEPS = 500
REWARD_VERSIONS = ("v1", "v2")
VECTOR_MODES = ("sync", "async", "sharded")
VALID_SPECS = "MT10, MT25, MT50, MT1:<task>, or comma-separated v3 task names (reach-v3,push-v3)"

# MT25 is McLean et al. 2025's 25-task set: their code (rainx0r/metaworld-algorithms,
# metaworld_algorithms/envs/metaworld.py, MetaworldConfig.spawn) builds "Meta-World/MT25", whose
# tasks are metaworld's env_dict.MT25_V3 (MT10, then 15 more); rainx0r/mtrl's
# experiments/width_scaling/mt25_mtmhsac_v2_4096.py runs it.
_BENCHMARK_CLASSES = {"MT10": env_dict.MT10_V3, "MT25": env_dict.MT25_V3, "MT50": env_dict.MT50_V3}


def resolve_metaworld_tasks(spec: str) -> list[str]:
    """Task names of a spec without building anything, so configs fail fast and cheaply."""
    _, names = _parse_spec(spec)
    return names


def _parse_spec(spec: str) -> tuple[str, list[str]]:
    """Returns (kind, task names); kind is a benchmark name, "MT1" or "custom"."""
    text = spec.strip()
    if text.upper() in _BENCHMARK_CLASSES:
        return text.upper(), list(_BENCHMARK_CLASSES[text.upper()])
    if text.upper().startswith("MT1:"):
        return "MT1", [_check_task_name(text[4:].strip())]
    if re.fullmatch(r"(?i)mt\d*(:.*)?", text):
        raise EnvError(f"unknown Meta-World task set {spec!r}; valid forms: {VALID_SPECS}")
    names = [_check_task_name(part.strip()) for part in text.split(",")]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise EnvError(f"duplicate Meta-World tasks in {spec!r}: {', '.join(duplicates)}")
    return "custom", names


def _check_task_name(name: str) -> str:
    known = list(env_dict.ALL_V3_ENVIRONMENTS)
    if name in known:
        return name
    if not name:
        raise EnvError(f"empty Meta-World task name; valid forms: {VALID_SPECS}")
    hint = suggest(name, known, fallback=f"valid forms: {VALID_SPECS}")
    raise EnvError(f"unknown Meta-World task {name!r}; {hint}")


GoalTasks = tuple[tuple[str, tuple[Task, ...]], ...]  # ((task name, its 50 goals), ...)


@functools.lru_cache(maxsize=4)
def load_goal_tasks(spec: str, seed: int) -> GoalTasks:
    """The 50 goals of every task in task order, fixed by the seed.

    Cached per (spec, seed) because generating them dominates construction (MT10 ~12 s, MT50 ~30 s)
    and a training env and its evaluation env share the same goals. Immutable, as it is shared.
    """
    kind, names = _parse_spec(spec)
    if kind in _BENCHMARK_CLASSES:
        tasks = getattr(metaworld, kind)(seed=seed).train_tasks
        return tuple((n, tuple(t for t in tasks if t.env_name == n)) for n in names)
    # Task i of a custom list draws its goals from seed + i, as metaworld's own
    # "Meta-World/custom-mt-envs" does; MT1 is the one-task case of the same rule.
    return tuple(
        (n, tuple(metaworld.MT1(n, seed=seed + i).train_tasks)) for i, n in enumerate(names)
    )


class GoalSelect(RandomTaskSelectWrapper):
    """Meta-World's random goal at each reset (training), or a fixed schedule (evaluation).

    Training keeps Meta-World's own draw with replacement, on the same random stream. Evaluation
    follows Meta-World's protocol of one episode per training goal: after ``set_goal_schedule``,
    the k-th reset takes goal ``schedule[k % len(schedule)]``. ``goal_index`` is the goal of the
    episode under way (-1 before the first reset).
    """

    def __init__(self, env: gym.Env, tasks: list[Task]) -> None:
        super().__init__(env, tasks)
        self.schedule: list[int] | None = None
        self.scheduled_resets = 0
        self.goal_index = -1

    def set_goal_schedule(self, indices: Sequence[int] | None) -> None:
        if indices is not None:
            indices = [int(i) for i in indices]
            if not indices or min(indices) < 0 or max(indices) >= len(self.tasks):
                raise EnvError(f"a goal schedule needs indices in [0, {len(self.tasks)})")
        self.schedule, self.scheduled_resets = indices, 0

    def _set_random_task(self) -> None:
        self.goal_index = int(self.np_random.choice(len(self.tasks)))
        self.unwrapped.set_task(self.tasks[self.goal_index])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.schedule is None:
            return super().reset(seed=seed, options=options)
        self.goal_index = self.schedule[self.scheduled_resets % len(self.schedule)]
        self.scheduled_resets += 1
        self.unwrapped.set_task(self.tasks[self.goal_index])
        return self.env.reset(seed=seed, options=options)


class TaskObservation(gym.ObservationWrapper):
    """Appends the task one-hot and casts to float32 under unbounded bounds.

    The bounds are unbounded on purpose: Meta-World declares the goal's bounds as [0, 0], so any
    code that normalised or checked with the declared space would be wrong.
    """

    def __init__(self, env: gym.Env, task_index: int, num_tasks: int) -> None:
        super().__init__(env)
        state_dim = int(np.prod(env.observation_space.shape))
        self.one_hot = np.zeros(num_tasks, dtype=np.float32)  # [T]
        self.one_hot[task_index] = 1.0
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(state_dim + num_tasks,), dtype=np.float32
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(observation, dtype=np.float32), self.one_hot])


def make_task_env(
    env_cls: Callable[..., gym.Env],
    goals: Sequence[Task],
    task_index: int,
    num_tasks: int,
    seed: int,
    reward_version: str = "v2",
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    render: bool = False,
    render_size: tuple[int, int] = (480, 480),
    camera: str | int | None = None,
) -> gym.Env:
    """One task's environment; module level so that async workers can unpickle it."""
    width, height = render_size
    env = env_cls(
        reward_function_version=reward_version,
        render_mode="rgb_array" if render else None,
        camera_name=camera if isinstance(camera, str) else None,
        camera_id=camera if isinstance(camera, int) else None,
        width=width,
        height=height,
    )
    # The raw env raises on a step past its own limit (500): make it agree with the TimeLimit.
    env.max_path_length = max_episode_steps
    env.seed(seed)  # reset(seed=...) is ignored by Meta-World: this is the only way in
    env = gym.wrappers.TimeLimit(env, max_episode_steps)
    env = AutoTerminateOnSuccessWrapper(env)
    env.toggle_terminate_on_success(False)
    env = TaskObservation(env, task_index, num_tasks)
    # Draws one of the 50 goals at each reset from the base env's np_random (seeded above).
    return GoalSelect(env, list(goals))


def success_from_info(info: dict[str, Any], done: np.ndarray) -> np.ndarray:
    """The success flag [T] of one vector step.

    Where an episode ended (``done``), the env was already reset and ``info`` holds the reset's info
    (no success); the step's own info is under ``final_info``.
    """
    num_envs = done.shape[0]
    success = np.zeros(num_envs, dtype=bool)
    if "success" in info:
        success = np.asarray(info["_success"], bool) & (np.asarray(info["success"]) > 0)
    final = info.get("final_info", {})
    if "success" in final:
        final_success = np.asarray(final["_success"], bool) & (np.asarray(final["success"]) > 0)
        success = np.where(done, final_success, success)
    return success


def _quiet_async_worker(*args: Any) -> None:
    """gymnasium's async worker, ending quietly when its parent has gone: it reports the closed
    pipe by sending on it, which raises again, and each worker printed that traceback."""
    from gymnasium.vector.async_vector_env import _async_worker

    try:
        _async_worker(*args)
    except PARENT_GONE:
        pass


class MetaWorldVecEnv:
    """T Meta-World environments, env i runs task i; see ``mtrl.envs.base.MultiTaskVecEnv``."""

    def __init__(
        self,
        env_fns: list[Callable[[], gym.Env]],
        task_names: list[str],
        max_episode_steps: int,
        vector: str = "sync",
        render: bool = False,
        one_hot_dim: int | None = None,
    ) -> None:
        # copy=False: reset() and step() copy into fresh float32 arrays
        options = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "copy": False}
        if vector == "async":
            self._vec = gym.vector.AsyncVectorEnv(env_fns, worker=_quiet_async_worker, **options)
        else:
            self._vec = gym.vector.SyncVectorEnv(env_fns, **options)
        self._close = weakref.finalize(self, self._vec.close)  # once, from close() or GC
        self._close_at_exit = False
        self._render = render
        self.task_names = list(task_names)
        self.obs_dim = STATE_DIM + (len(task_names) if one_hot_dim is None else one_hot_dim)
        self.action_dim = ACTION_DIM
        self.max_episode_steps = max_episode_steps

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def num_goals(self) -> int:
        """Training goals per task (50 in Meta-World's benchmarks)."""
        return min(len(goals) for goals in self._vec.get_attr("tasks"))

    def reset(self) -> np.ndarray:
        obs, _ = self._vec.reset()
        return np.array(obs, dtype=np.float32)  # [T, obs_dim]

    def step(self, actions: np.ndarray) -> VecStep:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num_tasks, self.action_dim):
            raise ValueError(
                f"actions must have shape {(self.num_tasks, self.action_dim)}, got {actions.shape}"
            )
        obs, reward, terminated, truncated, info = self._vec.step(np.clip(actions, -1.0, 1.0))
        obs = np.array(obs, dtype=np.float32)  # [T, obs_dim]
        terminated = np.asarray(terminated, dtype=bool)  # [T]
        truncated = np.asarray(truncated, dtype=bool)  # [T]
        done = terminated | truncated
        next_obs = obs.copy()
        for i in np.flatnonzero(done):
            next_obs[i] = info["final_obs"][i]
        return VecStep(
            obs=obs,
            next_obs=next_obs,
            reward=np.asarray(reward, dtype=np.float32),
            terminated=terminated,
            truncated=truncated,
            success=success_from_info(info, done),
        )

    def set_terminate_on_success(self, flag: bool) -> None:
        self._vec.call("toggle_terminate_on_success", bool(flag))

    def set_goal_schedule(self, indices: Sequence[int] | None) -> None:
        self._vec.call("set_goal_schedule", None if indices is None else list(indices))

    def goal_indices(self) -> list[int]:
        """The goal index of the episode under way, per task (-1 before the first reset)."""
        return [int(i) for i in self._vec.get_attr("goal_index")]

    def render(self, task_index: int) -> np.ndarray:
        if not self._render:
            raise EnvError("this Meta-World env was built without render=True")
        if not 0 <= task_index < self.num_tasks:
            raise IndexError(f"task_index {task_index} out of range for {self.num_tasks} tasks")
        if isinstance(self._vec, gym.vector.SyncVectorEnv):
            frame = self._vec.envs[task_index].render()
            if not self._close_at_exit:
                # A first frame makes mujoco register eglTerminate at exit; registered after it,
                # our close runs first, while the render contexts can still be freed (else each
                # prints an EGLError traceback at shutdown).
                atexit.register(self._close)
                self._close_at_exit = True
        else:  # the async API can only call every worker; the other frames are discarded
            frame = self._vec.call("render")[task_index]
        return np.asarray(frame, dtype=np.uint8)  # [H, W, 3]

    def close(self) -> None:
        self._close()

    def __enter__(self) -> MetaWorldVecEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def make_metaworld_env(
    spec: str,
    seed: int,
    *,
    reward_version: str = "v2",
    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
    vector: str = "sync",
    render: bool = False,
    render_size: tuple[int, int] = (480, 480),
    camera: str | int | None = None,
    goal_seed: int | None = None,
    tasks: Sequence[str] | None = None,
    workers: int = 0,
) -> MetaWorldVecEnv | ShardedVecEnv:
    """Builds the task set; options are checked before the (slow) goal generation.

    ``seed`` seeds task i's env with ``seed + i`` (which goal is drawn at each reset, and the
    physics); ``goal_seed`` (default: ``seed``) fixes the 50 goals per task. Meta-World's MT
    protocol evaluates on the training goals, so an evaluation env keeps the training run's
    ``goal_seed`` and takes its own ``seed`` (and reuses the cached goals, skipping ~12 s on MT10).
    ``render_size`` is (width, height); ``camera`` a Meta-World camera name ("corner", ...) or id.
    ``tasks`` builds only those tasks of the spec, each exactly as in the full set (its goals, its
    seed, its one-hot over all of the spec's tasks), so a policy trained on MT50 is evaluated on one
    task without building fifty.
    """
    all_names = resolve_metaworld_tasks(spec)
    selected = list(all_names) if tasks is None else list(dict.fromkeys(tasks))
    missing = [name for name in selected if name not in all_names]
    if missing:
        raise EnvError(f"{', '.join(missing)} not in {spec}; its tasks: {', '.join(all_names)}")
    _check_options(reward_version, max_episode_steps, vector)
    if render and "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless: glfw needs a display, EGL does not
    goal_tasks = dict(load_goal_tasks(spec, seed if goal_seed is None else goal_seed))
    env_fns = []
    for name in selected:
        index = all_names.index(name)
        env_fns.append(
            functools.partial(
                make_task_env,
                env_dict.ALL_V3_ENVIRONMENTS[name],
                goal_tasks[name],
                task_index=index,
                num_tasks=len(all_names),
                seed=seed + index,
                reward_version=reward_version,
                max_episode_steps=max_episode_steps,
                render=render,
                render_size=render_size,
                camera=camera,
            )
        )
    if vector == "sharded":  # contiguous shards of tasks, one process each (sharded.py)
        count = max(1, min(len(selected), workers or os.cpu_count() or 1))
        bounds = np.linspace(0, len(selected), count + 1).round().astype(int)
        builders = [
            functools.partial(
                MetaWorldVecEnv,
                env_fns[a:b],
                selected[a:b],
                max_episode_steps,
                render=render,
                one_hot_dim=len(all_names),
            )
            for a, b in itertools.pairwise(bounds)
        ]
        return ShardedVecEnv(builders)
    return MetaWorldVecEnv(
        env_fns,
        selected,
        max_episode_steps,
        vector=vector,
        render=render,
        one_hot_dim=len(all_names),
    )


def _check_options(reward_version: str, max_episode_steps: int, vector: str) -> None:
    if reward_version not in REWARD_VERSIONS:
        raise EnvError(f"reward_version must be one of {REWARD_VERSIONS}, got {reward_version!r}")
    if max_episode_steps < 1:
        raise EnvError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    if vector not in VECTOR_MODES:
        raise EnvError(f"vector must be one of {VECTOR_MODES}, got {vector!r}")
