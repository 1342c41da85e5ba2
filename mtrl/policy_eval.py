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
import torch

from mtrl.envs import is_metaworld
from mtrl.errors import UsageError
from mtrl.evaluation import (
    GOAL_SCHEME,
    TaskResult,
    evaluate,
    format_table,
)
from mtrl.policy import (
    TASK_POLICY,
    load_agent,
    load_task_policy,
    load_training_checkpoint,
    read_run,
)
from mtrl.run import make_eval_env, resolve_device


def _select_tasks(trained: list[str], requested: list[str] | None) -> list[str]:
    if not requested:
        return trained
    unknown = [task for task in requested if task not in trained]
    if unknown:
        raise UsageError(
            f"the policy was not trained on {', '.join(unknown)}; its tasks: {', '.join(trained)}"
        )
    return list(dict.fromkeys(requested))


def evaluate_checkpoint(
    checkpoint: str | Path,
    tasks: list[str] | None = None,
    episodes: int | None = None,
    video: str | None = None,
    out: str | None = None,
    seed: int | None = None,
    device: str = "auto",
) -> dict[str, TaskResult]:
    path, payload = load_training_checkpoint(Path(checkpoint))
    config, trained, _, _ = read_run(path, payload)
    if episodes is not None and episodes <= 0:
        raise UsageError(f"--episodes must be > 0, got {episodes}")
    episodes = episodes or config.final_eval_episodes

    if payload.get("kind") == TASK_POLICY:  # one task's exported path (mtrl export)
        exported = str(payload.get("task"))
        selected = _select_tasks([exported], tasks)
        task_policy = load_task_policy(path, payload)

        def policy(obs: np.ndarray) -> np.ndarray:
            return task_policy.act(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    else:
        selected = _select_tasks(trained, tasks)
        agent = load_agent(path, payload, resolve_device(device))

        def policy(obs: np.ndarray) -> np.ndarray:
            return agent.act(obs, deterministic=True)

    indices = [trained.index(task) for task in selected]
    env = make_eval_env(config, seed, tasks=selected, render=bool(video))
    # Meta-World steps just the selected tasks; a synthetic set steps all and reports some.
    record_rows = list(range(len(selected))) if is_metaworld(config.env.name) else indices

    frames: dict[int, list[np.ndarray]] = {row: [] for row in record_rows} if video else {}
    try:
        all_results = evaluate(policy, env, episodes, record=frames)
    finally:
        env.close()
    results = {task: all_results[task] for task in selected}

    print(f"checkpoint: {path} (step {payload.get('step')})")
    print(format_table(results))
    out_path = Path(out) if out else path.parent.parent / "eval" / f"eval_{path.stem}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            {
                "checkpoint": str(path),
                "episodes": episodes,
                "goal_scheme": GOAL_SCHEME,
                "tasks": {task: asdict(result) for task, result in results.items()},
            },
            indent=2,
        )
    )
    print(f"results: {out_path}")
    if video:
        from mtrl.video import write_videos

        videos = {task: frames[row] for task, row in zip(selected, record_rows, strict=True)}
        for written in write_videos(video, videos):
            print(f"video: {written}")
    return results
