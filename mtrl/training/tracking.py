"""Weights & Biases for the runs that ask for it (``wandb.project=...``): the scalars the run logs,
its resolved config, the final per-task table and evaluation videos, one W&B run per run directory.

The W&B run id is kept in run.json, so ``mtrl train --resume`` continues the same W&B run instead of
starting a second one. W&B's own step may only grow, and a resume re-makes the steps logged after
its checkpoint, so every record carries ``global_step`` as its x-axis (``define_metric``): the
re-made steps then appear twice in W&B, as the superseded ones do in ``metrics.superseded.jsonl``.
``metrics.jsonl`` stays the record reports read; W&B is for looking and sharing.
"""

from __future__ import annotations

import math
import secrets
import string
from pathlib import Path
from typing import Any

from mtrl.config import Config, method_label, to_dict
from mtrl.errors import RunError
from mtrl.extras import require

STEP = "global_step"


def wanted(config: Config) -> bool:
    return bool(config.wandb.project) and config.wandb.mode != "disabled"


def check_available(config: Config) -> None:
    """A run that asks for W&B where wandb is not installed stops before it starts, in one line."""
    if wanted(config):
        require("wandb", "wandb.project")


def new_run_id() -> str:
    """Eight characters of [a-z0-9], as W&B's own ids."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


TAG_LENGTH = 64  # the longest tag W&B takes


def run_names(config: Config) -> dict[str, Any]:
    """The W&B name, job type and tags of a run: its method label and seed, so that every method's
    seed-0 run of a sweep has a name of its own (``SAC-seed0``), and W&B's filters can pick a
    method (job type), an env or a seed."""
    label = method_label(config)
    tags = [label, config.env.name, f"seed{config.seed}"]
    return {
        "name": f"{label}-seed{config.seed}",
        "job_type": label,
        "tags": [tag[:TAG_LENGTH] for tag in tags],
    }


class WandbRun:
    """One W&B run, created or (with the id a previous process kept) resumed."""

    def __init__(self, config: Config, run_dir: Path, run_id: str):
        import wandb

        self._wandb = wandb
        options = config.wandb
        try:
            self.run = wandb.init(
                project=options.project,
                entity=options.entity or None,
                group=options.group or None,
                mode=options.mode or None,
                id=run_id,
                resume="allow",
                **run_names(config),
                dir=str(run_dir),
                config=to_dict(config),
                reinit="create_new",  # mtrl.train called again in one notebook: a new W&B run
            )
        except Exception as error:  # no API key, no network: one line, before any step is taken
            first = " ".join(str(error).split())[:200]
            raise RunError(
                f"W&B did not start ({type(error).__name__}: {first}); run `wandb login`, or set "
                "wandb.mode=offline (and `wandb sync` later)"
            ) from None
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)

    @property
    def url(self) -> str | None:
        return getattr(self.run, "url", None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        finite = {key: value for key, value in scalars.items() if math.isfinite(value)}
        self.run.log({**finite, STEP: step})

    def final_table(self, step: int, results: dict[str, Any]) -> None:
        """The final evaluation's per-task table (``results``: task -> its ``TaskResult``)."""
        columns = ["task", "success_rate", "mean_return", "mean_length", "episodes"]
        data = [[task, *(getattr(r, key) for key in columns[1:])] for task, r in results.items()]
        table = self._wandb.Table(columns=columns, data=data)
        self.run.log({"eval/final_table": table, STEP: step})
        mean = sum(r.success_rate for r in results.values()) / max(len(results), 1)
        self.run.summary["eval/final_mean_success_rate"] = mean

    def video(self, step: int, task: str, path: Path) -> None:
        self.run.log({f"videos/{task}": self._wandb.Video(str(path), format="gif"), STEP: step})

    def finish(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)


def hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as TensorBoard's hparams take it: flat keys, scalars and strings only."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(hparams(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def start(
    config: Config, run_dir: Path, previous: dict[str, Any] | None
) -> tuple[WandbRun | None, dict[str, Any] | None]:
    """The run's W&B run (None without ``wandb.project``) and its run.json record; ``previous``:
    the record a resumed run kept, whose W&B run it continues."""
    if not wanted(config):
        return None, previous  # a resume without W&B keeps the record of the one it had
    record = {"project": config.wandb.project, "run_id": None, **(previous or {})}
    record["run_id"] = record["run_id"] or new_run_id()
    run = WandbRun(config, run_dir, record["run_id"])
    record["url"] = run.url
    return run, record
