"""Deterministic per-task evaluation, batched across tasks, on Meta-World v3's protocol.

The protocol (Meta-World's docs, "evaluation"; ``metaworld.evaluation.evaluation``): deterministic
actions, one episode per training goal per task, an episode counts as a success if the task reports
success at any step, and it ends at its first success. Drawing goals at random instead (Meta-World's
``RandomTaskSelectWrapper``) makes a 50-episode evaluation see only ~32 of the 50 goals, so
``goal_schedule`` fixes which goal each episode runs on. All tasks step together; a task that has
finished its quota keeps stepping (the vector env steps every task) but is no longer counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.envs.base import MultiTaskVecEnv

Policy = Callable[[np.ndarray], np.ndarray]  # obs [T, obs_dim] -> actions [T, A]

EVAL_SEED_OFFSET = 1_000_003  # evaluation envs draw start states from a stream training never sees
# The protocol's name in run.json and reports (see ``goal_schedule``).
GOAL_SCHEME = "each-training-goal-once"


def goal_schedule(episodes: int, num_goals: int) -> list[int]:
    """The goal index of each of a task's ``episodes`` evaluation episodes.

    ``episodes == num_goals`` (Meta-World's 50): every goal exactly once, in order. Fewer: a fixed,
    evenly spaced subset (goal ``floor(k * num_goals / episodes)`` for episode k; 5 of 50 -> 0, 10,
    20, 30, 40), the same at every evaluation of every run, so periodic evaluations of one run
    compare like with like. More: whole cycles of all goals, then the evenly spaced subset for the
    remainder.
    """
    if episodes < 1 or num_goals < 1:
        raise ValueError(f"need episodes >= 1 and num_goals >= 1, got {episodes}, {num_goals}")
    cycles, rest = divmod(episodes, num_goals)
    return list(range(num_goals)) * cycles + [(k * num_goals) // rest for k in range(rest)]


@dataclass(frozen=True)
class TaskResult:
    success_rate: float
    mean_return: float
    mean_length: float
    episodes: int
    goal_indices: tuple[int, ...] = ()  # episode k ran on training goal goal_indices[k]
    successes: tuple[bool, ...] = ()  # episode k's success


def evaluate(
    policy: Policy,
    env: MultiTaskVecEnv,
    episodes: int,
    record: dict[int, list[np.ndarray]] | None = None,
) -> dict[str, TaskResult]:
    """Runs ``episodes`` episodes per task on the goals of ``goal_schedule``; ``record`` maps task
    indices to lists that receive the RGB frames of that task's first episode (the env must be
    built for rendering)."""
    num_tasks = env.num_tasks
    successes = np.zeros((num_tasks, episodes), dtype=bool)
    returns = np.zeros((num_tasks, episodes))
    lengths = np.zeros((num_tasks, episodes))
    finished = np.zeros(num_tasks, dtype=int)  # completed episodes per task
    running_return = np.zeros(num_tasks)
    running_length = np.zeros(num_tasks, dtype=int)
    running_success = np.zeros(num_tasks, dtype=bool)
    record = record or {}

    goals = goal_schedule(episodes, env.num_goals)
    env.set_terminate_on_success(True)
    env.set_goal_schedule(goals)
    try:
        obs = env.reset()
        _record_frames(env, record, finished)
        while finished.min() < episodes:
            step = env.step(policy(obs))
            obs = step.obs
            running_return += step.reward
            running_length += 1
            running_success |= step.success
            done = step.terminated | step.truncated
            counted = done & (finished < episodes)  # [T]
            rows = np.flatnonzero(counted)
            slots = finished[rows]
            successes[rows, slots] = running_success[rows]
            returns[rows, slots] = running_return[rows]
            lengths[rows, slots] = running_length[rows]
            finished[rows] += 1
            running_return[done], running_length[done], running_success[done] = 0.0, 0, False
            _record_frames(env, record, finished)
    finally:
        env.set_terminate_on_success(False)
        env.set_goal_schedule(None)
    return {
        name: TaskResult(
            success_rate=float(successes[i].mean()),
            mean_return=float(returns[i].mean()),
            mean_length=float(lengths[i].mean()),
            episodes=episodes,
            goal_indices=tuple(goals),
            successes=tuple(bool(s) for s in successes[i]),
        )
        for i, name in enumerate(env.task_names)
    }


def _record_frames(
    env: MultiTaskVecEnv, record: dict[int, list[np.ndarray]], finished: np.ndarray
) -> None:
    for task_index, frames in record.items():
        if finished[task_index] == 0:
            frames.append(env.render(task_index))


def mean_success(results: dict[str, TaskResult]) -> float:
    return float(np.mean([r.success_rate for r in results.values()]))


def format_table(results: dict[str, TaskResult]) -> str:
    """The per-task table printed at the end of training and by ``mtrl eval``."""
    width = max([len("task")] + [len(name) for name in results])
    lines = [
        f"{'task':<{width}}  {'success':>7}  {'return':>9}  {'length':>7}  {'episodes':>8}",
        f"{'-' * width}  {'-' * 7}  {'-' * 9}  {'-' * 7}  {'-' * 8}",
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<{width}}  {r.success_rate:>7.2f}  {r.mean_return:>9.1f}  "
            f"{r.mean_length:>7.1f}  {r.episodes:>8d}"
        )
    lines.append(f"{'mean':<{width}}  {mean_success(results):>7.2f}")
    return "\n".join(lines)


def log_evaluation(
    logger: Any, step: int, results: dict[str, TaskResult], run_dir: Path, final: bool
) -> None:
    """The evaluation record every run writes (the keys ``mtrl report`` reads), and for the final
    evaluation ``eval/final.json``."""
    scalars = {"eval/mean_success_rate": mean_success(results)}
    scalars["eval/mean_return"] = float(np.mean([r.mean_return for r in results.values()]))
    for name, result in results.items():
        scalars[f"tasks/{name}/success_rate"] = result.success_rate
        scalars[f"tasks/{name}/return"] = result.mean_return
    logger.log(step, scalars, kind="final_eval" if final else "eval")
    if final:
        (run_dir / "eval").mkdir(exist_ok=True)
        table = {name: asdict(result) for name, result in results.items()}
        (run_dir / "eval" / "final.json").write_text(
            json.dumps({"step": step, "goal_scheme": GOAL_SCHEME, "tasks": table}, indent=2)
        )
