"""mtrl from Python: ``train``, ``load_policy``, ``evaluate`` (stable-baselines3's habits, for runs
that are directories).

A run started here is the same run ``mtrl train`` makes: the same run directory, checkpoints,
logs and final evaluation, resumable from either side. The functions raise ``mtrl.errors``'
``UserError``s (one line each) on bad input, as the command line prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl.callbacks import Callback
from mtrl.config import Config, _apply, apply_overrides, validate
from mtrl.evaluation.command import evaluate_policy
from mtrl.evaluation.policy import Policy, load_policy
from mtrl.evaluation.protocol import TaskResult, mean_success

__all__ = ["RunResult", "evaluate", "load_policy", "train"]


@dataclass(frozen=True)
class RunResult:
    """What a finished (or stopped) run left: its directory, its final per-task evaluation (None
    where a callback or a signal stopped it first), the step it reached, its last checkpoint and
    the config it ran with."""

    run_dir: Path
    results: dict[str, TaskResult] | None
    step: int
    checkpoint: Path | None
    config: Config | None = None

    @property
    def finished(self) -> bool:
        return self.results is not None

    @property
    def mean_success(self) -> float | None:
        return None if self.results is None else mean_success(self.results)


def _config(
    config: Config | str | Path | None, overrides: list[str] | tuple[str, ...], fields: dict
) -> Config:
    from mtrl.config import build_config

    base = config if isinstance(config, Config) else build_config(config, check=False)
    if fields:  # keyword fields: total_steps=2000, agent={"critic": "multihead"}
        base = _apply(Config, base, fields)
    if overrides:  # dotted strings, as on the command line: "agent.critic=multihead"
        base = apply_overrides(base, list(overrides))
    return validate(base)


def train(
    config: Config | str | Path | None = None,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    env: Any = None,
    eval_env: Any = None,
    callbacks: Callback | list[Callback] | None = None,
    track: bool = False,
    **fields: Any,
) -> RunResult:
    """Trains a run and returns its ``RunResult``.

    ``config``: a ``Config``, a shipped preset's name (``"mt10/mt_sac"``) or a YAML file; the
    defaults where None. ``fields`` set config keys (``total_steps=2000``, ``seed=3``,
    ``agent={"critic": "multihead"}``); ``overrides`` take the command line's ``key=value``
    strings. ``resume``: a run directory to continue (its config.yaml, which must agree with its
    checkpoint; ``fields`` and ``overrides`` may change what a resume may change; a run already
    finished at its ``total_steps`` raises ``RunFinishedError``). ``env``/``eval_env``: a user's
    ``MultiTaskVecEnv`` or a factory ``seed -> env`` instead of ``env.name`` (``mtrl.training.trainer``).
    ``track``: log to Weights & Biases, under project "mtrl" where the config names none
    (``mtrl train --track``).

    The one place that resolves a fresh run or a resume, its directory and its trainer:
    ``mtrl train`` calls it.
    """
    from mtrl.training.checkpoint import step_checkpoints
    from mtrl.training.run import check_specs, check_updates, default_run_dir
    from mtrl.training.trainer import Trainer, resume_config_and_point

    point = None
    if resume is not None:
        directory = Path(resume)
        if config is not None or run_dir is not None:
            raise TypeError("resume= continues a run with its own config and directory")
        flat = [*overrides, *(f"{key}={value}" for key, value in _dotted(fields).items())]
        num_tasks = None
        if env is not None:
            probe = env(0) if callable(env) else env
            num_tasks = probe.num_tasks
            if callable(env):
                probe.close()
        built, point = resume_config_and_point(directory, flat, num_tasks=num_tasks)
    else:
        built = _config(config, overrides, fields)
        if run_dir is not None:
            built = _apply(Config, built, {"run_dir": str(run_dir)})
        if env is None:  # a user's env is checked with its number of tasks, by the trainer
            check_specs(check_updates(built))
        directory = Path(built.run_dir) if built.run_dir else default_run_dir(built)
    if track and not built.wandb.project:  # CleanRL's --track: W&B, project "mtrl"
        # (the trainer checks, as for any config, that wandb is installed)
        built = _apply(Config, built, {"wandb": {"project": "mtrl"}})
    if built.agent.algorithm == "independent":
        if env is not None or eval_env is not None:
            raise TypeError("the independent baseline takes no env= or eval_env=")
        from mtrl.baselines.independent import IndependentTrainer

        trainer = IndependentTrainer(
            built, directory, resume=resume is not None, callbacks=callbacks
        )
    else:
        trainer = Trainer(
            built,
            directory,
            resume=resume is not None,
            env=env,
            eval_env=eval_env,
            callbacks=callbacks,
            checkpoint=point,
        )
    try:
        results = trainer.train()
    finally:
        trainer.close()
    checkpoints = step_checkpoints(directory)
    last = checkpoints[-1] if checkpoints else None
    return RunResult(directory, results, trainer.step, last, trainer.config)


def _dotted(fields: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, dict):
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def evaluate(
    policy: Policy | str | Path,
    tasks: list[str] | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    env: Any = None,
) -> dict[str, TaskResult]:
    """Deterministic episodes of ``policy`` (a ``Policy``, a checkpoint or a run directory) on
    ``tasks`` (default: all), one per training goal, on the run's evaluation env (Meta-World's
    protocol; ``mtrl eval`` without the printing), or on ``env`` (a ``MultiTaskVecEnv`` of the
    policy's tasks; needed for a run on a user's env): task -> ``TaskResult``."""
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    return evaluate_policy(policy, tasks, episodes, seed, env=env)
