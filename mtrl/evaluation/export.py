"""``mtrl export``: one task's path of a task-routed policy as a small stand-alone policy file.

A task-routed actor (``agent.actor=task_routed``) gives each task a plain MLP through the shared and
own layers; deploying one task needs only that MLP, not the other tasks' layers or the critics. The
exported file uses the checkpoint format (hash-checked, safe unpickling) with ``kind: task_policy``,
and ``mtrl eval`` reads it like a training checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mtrl.agents.networks.task_routed import TaskRoutedBody
from mtrl.errors import ExportError, writing
from mtrl.evaluation.policy import (
    TASK_POLICY,
    TaskPolicy,
    load_actor,
    load_training_checkpoint,
    read_run,
)
from mtrl.training.checkpoint import save_checkpoint


def export_task_policy(checkpoint: str | Path, task: str, out: str | Path) -> Path:
    path, payload = load_training_checkpoint(Path(checkpoint))
    if payload.get("kind") == TASK_POLICY:
        raise ExportError(f"{path} is already an exported task policy")
    config, trained, obs_dim, action_dim = read_run(path, payload)
    if task not in trained:
        raise ExportError(f"the policy was not trained on {task}; its tasks: {', '.join(trained)}")
    if not config.agent.actor.startswith("task_routed"):
        raise ExportError(
            f"agent.actor is '{config.agent.actor}': only a task_routed actor has one task's "
            "path to export (train with agent.actor=task_routed)"
        )
    actor = load_actor(path, payload)
    assert isinstance(actor.body, TaskRoutedBody)
    path_mlp = actor.body.extract(trained.index(task))
    linears = [m for m in path_mlp if isinstance(m, nn.Linear)]
    layer_sizes = [linears[0].in_features] + [m.out_features for m in linears]
    policy = TaskPolicy(layer_sizes)
    policy.net.load_state_dict(path_mlp.state_dict())
    out = Path(out)
    exported = {
        "kind": TASK_POLICY,
        "task": task,
        "task_names": trained,
        "config": payload["config"],
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "step": payload.get("step"),
        "layer_sizes": layer_sizes,
        "policy": policy.state_dict(),
    }
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(out, exported)
    return out
