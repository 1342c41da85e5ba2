"""``mtrl eval``: a saved policy on any subset of the tasks it was trained on.

A Meta-World subset is built as just those tasks, each exactly as in training (its goals, and its
one-hot over all trained tasks), so evaluating one task of MT50 builds one environment, not fifty.
Synthetic tasks are defined by their index among all tasks, so there the full set is stepped and
the subset reported.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mtrl.envs import is_custom, is_metaworld
from mtrl.envs.base import MultiTaskVecEnv
from mtrl.errors import CheckpointError, UsageError, writing
from mtrl.evaluation.policy import Policy, load_policy
from mtrl.evaluation.protocol import (
    GOAL_SCHEME,
    TaskResult,
    evaluate,
    format_table,
)
from mtrl.limits import MAX_EPISODES, MAX_SEED, at_most
from mtrl.training.checkpoint import checkpoint_dir, step_checkpoints
from mtrl.training.lock import holder
from mtrl.training.run import make_eval_env


def _select_tasks(trained: list[str], requested: list[str] | None) -> list[str]:
    if not requested:
        return trained
    unknown = [task for task in requested if task not in trained]
    if unknown:
        raise UsageError(
            f"the policy was not trained on {', '.join(unknown)}; its tasks: {', '.join(trained)}"
        )
    return list(dict.fromkeys(requested))


def check_options(
    episodes: int | None, seed: int | None, out: str | Path | None = None, flags: bool = False
) -> None:
    """Evaluation options within bounds, and ``out`` a file that can be written, before anything
    is loaded or run; ``flags``: name them as ``mtrl eval``'s options."""
    dash = "--" if flags else ""
    if episodes is not None:
        if episodes <= 0:
            raise UsageError(f"{dash}episodes: must be > 0, got {episodes}")
        at_most(f"{dash}episodes", episodes, MAX_EPISODES, UsageError)
    if seed is not None:
        if seed < 0:
            raise UsageError(f"{dash}seed: must be >= 0, got {seed}")
        at_most(f"{dash}seed", seed, MAX_SEED, UsageError)
    if out is None:
        return
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"{dash}out {path} is a directory; give the JSON file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{dash}out {path}: {parent} is a file, not a directory")
            break


def evaluate_policy(
    policy: Policy,
    tasks: list[str] | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    frames: dict[str, list[np.ndarray]] | None = None,
    env: MultiTaskVecEnv | None = None,
) -> dict[str, TaskResult]:
    """``episodes`` deterministic episodes (default: the run's final-evaluation count) on each of
    ``tasks`` (default: all the policy's), one per training goal, on the run's evaluation env (or
    ``env``, which must step all the policy's tasks, and is left open); ``frames`` (task -> list)
    receives the RGB frames of each listed task's first episode."""
    check_options(episodes, seed)
    config = policy.config
    episodes = episodes or config.final_eval_episodes
    selected = _select_tasks(policy.task_names, tasks)
    indices = [policy.trained_tasks.index(task) for task in selected]
    own = env is None  # built here, so closed here; a user's env stays open
    if not own:  # the user's: all tasks stepped, the selected ones reported
        if list(env.task_names) != policy.trained_tasks:
            raise UsageError(
                f"env's tasks {env.task_names} are not the policy's {policy.trained_tasks}"
            )
        rows = indices
    elif is_custom(config.env.name):
        raise UsageError(
            f"the policy was trained on a user's env ({config.env.name}): pass env= to evaluate it"
        )
    else:
        env = make_eval_env(config, seed, tasks=selected, render=bool(frames))
        # Meta-World steps just the selected tasks; a synthetic set steps all and reports some.
        rows = list(range(len(selected))) if is_metaworld(config.env.name) else indices
    frames = frames or {}
    record = {row: frames[task] for task, row in zip(selected, rows, strict=True) if task in frames}
    try:
        all_results = evaluate(policy, env, episodes, record=record)
    finally:
        if own:
            env.close()
    return {task: all_results[task] for task in selected}


def default_results_path(checkpoint: Path) -> Path:
    """Where ``mtrl eval`` writes a checkpoint's results without ``--out``: the run's ``eval/``
    for a checkpoint in a run's ``checkpoints/``, else next to the file: never outside the folder
    the user named."""
    name = f"eval_{checkpoint.stem}.json"
    if checkpoint.parent == checkpoint_dir(checkpoint.parent.parent):
        return checkpoint.parent.parent / "eval" / name
    return checkpoint.parent / name


def evaluate_checkpoint(
    checkpoint: str | Path,
    tasks: list[str] | None = None,
    episodes: int | None = None,
    video: str | None = None,
    out: str | None = None,
    seed: int | None = None,
    device: str = "auto",
) -> dict[str, TaskResult]:
    """``mtrl eval``: evaluates, prints the table and writes the results (and videos). A run
    directory that is still being trained (a live writer holds its lock) is said to be: its
    latest checkpoint is not its final policy. Options, the output and the video path are
    checked before the evaluation's minutes."""
    check_options(episodes, seed, out, flags=True)
    if video:
        from mtrl.evaluation.video import check_video_path

        check_video_path(video)
    source = Path(checkpoint)
    writer = holder(source) if source.is_dir() else None
    training = None
    if writer is not None:
        training = f"pid {writer.get('pid', '?')} on host {writer.get('host', '?')}"
        if not step_checkpoints(source):
            raise CheckpointError(
                f"{source} has not written a checkpoint yet: the run is still training "
                f"({training}); evaluate it after its first checkpoint"
            )
    policy = load_policy(checkpoint, device)
    selected = _select_tasks(policy.task_names, tasks)
    frames: dict[str, list[np.ndarray]] = {task: [] for task in selected} if video else {}
    path = policy.path
    out_path = Path(out) if out else default_results_path(path)
    with writing(out_path.parent):  # before the evaluation, not after it
        out_path.parent.mkdir(parents=True, exist_ok=True)
    results = evaluate_policy(policy, selected, episodes, seed, frames)
    if training is None:
        print(f"checkpoint: {path} (step {policy.step})")
    else:
        print(
            f"checkpoint: {path} (step {policy.step}; the run is still training, {training}: "
            "its latest checkpoint, not its final policy)"
        )
    print(format_table(results))
    record = {
        "checkpoint": str(path),
        "episodes": next(iter(results.values())).episodes,
        "goal_scheme": GOAL_SCHEME,
        "tasks": {task: asdict(result) for task, result in results.items()},
    }
    with writing(out_path):
        out_path.write_text(json.dumps(record, indent=2))
    print(f"results: {out_path}")
    if video:
        from mtrl.evaluation.video import write_videos

        for written in write_videos(video, frames):
            print(f"video: {written}")
    return results
