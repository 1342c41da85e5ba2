"""Resumable learning runs for the benchmark scripts: a preset trained for a number of steps per task
in its own run directory, and the curve and wall-clock read back from it.

Every run is an ordinary ``mtrl train`` run directory: a finished one is skipped, an unfinished one is
resumed from its checkpoint (the replay buffer is checkpointed too, so a resumed run learns as an
uninterrupted one), so a benchmark killed at the end of a session loses at most one checkpoint
interval. The wall-clock is summed from the logged windows (evaluations included, start-up and the
replay loading of resumes not), so it survives interruptions.

Run directories are git-ignored (their checkpoints hold the replay buffer) and live only on the
machine that ran them, so each run's curve is also kept in a small JSON *record* committed with the
results (``record_curve``): the reports read the records, and a seed finished, or evaluated part
way, in one session still counts after its machine is gone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MTRL = [sys.executable, "-m", "mtrl"]  # the interpreter running the script, venv or not


def train(
    run_dir: Path,
    preset: Path,
    seed: int,
    args: argparse.Namespace,
    overrides: list[str] | tuple[str, ...] = (),
    record: Path | None = None,
) -> None:
    """Trains (or resumes, or skips) one run with the budget in ``args`` (``add_arguments``);
    exits with a one-line message if training fails. A run whose directory is gone but whose
    ``record`` says it finished (on another machine) is skipped too, not trained again."""
    if (run_dir / "eval" / "final.json").is_file():
        print(f"{shown(run_dir)}: finished, skipped")
        return
    if not run_dir.exists() and record is not None and record.is_file():
        if load_record(record).get("finished"):
            print(f"{shown(run_dir)}: finished elsewhere ({shown(record)}), skipped")
            return
    options = [
        f"total_steps={args.steps}",
        f"eval_every={args.eval_every}",
        "eval_episodes=50",
        "final_eval_episodes=50",
        f"checkpoint_every={args.checkpoint_every}",
        "checkpoint_replay=true",
        "keep_checkpoints=1",
        f"torch_threads={args.torch_threads}",
        "progress=false",
    ]
    if any(run_dir.glob("checkpoints/step_*.pt")):
        command = [*MTRL, "train", "--resume", str(run_dir), *options]
    else:
        command = [*MTRL, "train", "--config", str(preset), f"seed={seed}", f"run_dir={run_dir}"]
        # fp32 unless a benchmark says otherwise: a preset's agent.precision=auto, where one sets
        # it, would make a record's arithmetic depend on the machine that ran it.
        if not any(o.startswith("agent.precision=") for o in overrides):
            command.append("agent.precision=fp32")
        command += [*overrides, *options]
    print(" ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{run_dir}: mtrl train exited with {done.returncode}; rerun to resume")


def shown(run_dir: Path) -> Path:
    """A run directory as records and messages name it: relative to the repository if in it."""
    return run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir


def read_curve(run_dir: Path, num_tasks: int) -> dict | None:
    """{"points": {step: {task: success}}, "seconds": wall-clock, "finished": bool}, or None when
    the run has logged nothing yet."""
    from mtrl.training.logging import read_metrics

    if not (run_dir / "metrics.jsonl").is_file():
        return None
    points: dict[int, dict[str, float]] = {}
    metrics = read_metrics(run_dir)
    seconds = wall_seconds(metrics, num_tasks)
    for record in metrics:
        if record.get("kind") not in ("eval", "final_eval"):
            continue
        points[int(record["step"])] = {
            key.split("/")[1]: float(value)
            for key, value in record.items()
            if key.startswith("tasks/") and key.endswith("/success_rate")
        }
    finished = (run_dir / "eval" / "final.json").is_file()
    curve = {"points": points, "seconds": seconds, "finished": finished}
    curve["means"] = {step: sum(tasks.values()) / len(tasks) for step, tasks in points.items()}
    if (run_dir / "run.json").is_file():
        curve["parameter_counts"] = json.loads((run_dir / "run.json").read_text())[
            "parameter_counts"
        ]
    return curve


def wall_seconds(metrics: list[dict], num_tasks: int) -> float:
    """A run's wall-clock from its logged train windows (each window's steps over its env steps
    per second, evaluations included), summed over the run's sessions: resumes and pauses between
    them do not count."""
    seconds, last_step = 0.0, 0
    for record in metrics:
        if record.get("kind") == "train" and record.get("charts/env_steps_per_s"):
            seconds += (
                (int(record["step"]) - last_step) * num_tasks / record["charts/env_steps_per_s"]
            )
            last_step = int(record["step"])
    return seconds


def record_curve(run_dir: Path, record: Path, num_tasks: int) -> dict | None:
    """The run's curve (``read_curve``'s, plus ``means``: step -> mean success over tasks), from
    its directory when that is here, and written to ``record`` so it outlives the machine.

    A record that holds more evaluations than the directory (a seed restarted on a new machine
    before catching up) is kept and returned. A record may carry only per-seed ``means`` for steps
    whose per-task scores were lost (seeds run before records existed); its ``source`` says so.
    """
    stored = load_record(record) if record.is_file() else None
    curve = read_curve(run_dir, num_tasks)
    if curve is None or (stored is not None and len(stored["means"]) > len(curve["means"])):
        return stored
    record.parent.mkdir(parents=True, exist_ok=True)
    text = {key: value for key, value in curve.items() if key not in ("points", "means")}
    text["points"] = {str(step): tasks for step, tasks in sorted(curve["points"].items())}
    text["means"] = {str(step): mean for step, mean in sorted(curve["means"].items())}
    text["source"] = f"{shown(run_dir)}, recorded {time.strftime('%Y-%m-%d')}"
    record.write_text(json.dumps(text, indent=1) + "\n")
    return curve


# What a slim copy keeps of a train record: the window's timing (the report's cost column), the
# gradient diagnostics (the triad figure, each task's gradient norms, each pair's critic cosine),
# and what a reading of a failure cites (the critic's mean Q and loss, the policy's entropy, each
# task's temperature, skipped updates); the actor's pair cosines and the rest stay in the run directory.
_KEPT_TRAIN_KEYS = (
    "charts/env_steps_per_s",
    "charts/updates_per_s",
    "charts/time_update_fraction",
    "charts/q_mean",
    "charts/entropy",
    "charts/nonfinite_updates",
    "losses/critic",
)
_KEPT_TRAIN_PREFIXES = ("gradients/",)
_KEPT_TASK_SUFFIXES = ("/critic_grad_norm", "/actor_grad_norm", "/alpha")


def keep_run_files(run_dir: Path, copy: Path) -> bool:
    """A slim copy of a run directory that ``mtrl report`` reads as the run itself:
    ``config.yaml``, ``run.json``, ``eval/final.json`` and ``metrics.jsonl`` with every
    evaluation and, of the train records, the timing, the gradient diagnostics and the critic's
    and temperatures' health (floats to 4 significant digits): under 1 MB for an MT10 run of 100k
    steps per task instead of its GBs of checkpoints, committed so that the report outlives the
    machine.

    False, the copy left as it is, when the run directory is not here, when another process is
    writing it (its lock is held, ``mtrl.training.lock.holder``: a report made beside a running
    grid would otherwise copy a run part way, and that copy would be committed with the finished
    ones; the run's driver copies it when it stops), or when it holds fewer evaluations than the
    copy (a seed restarted on a fresh machine before catching up with what an earlier one
    recorded)."""
    from mtrl.training.lock import holder
    from mtrl.training.logging import read_metrics

    if not (run_dir / "metrics.jsonl").is_file() or holder(run_dir) is not None:
        return False
    if evaluation_count(run_dir) < evaluation_count(copy):
        return False
    copy.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "run.json", "eval/final.json"):
        if (run_dir / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            (copy / name).write_bytes((run_dir / name).read_bytes())
    lines = []
    for record in read_metrics(run_dir):
        if record.get("kind") == "train":
            record = {key: value for key, value in record.items() if _kept_train_key(key)}
        lines.append(json.dumps({k: _rounded(v) for k, v in record.items()}))
    (copy / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return True


def evaluation_count(run_dir: Path) -> int:
    """How many evaluations a run directory (or its copy) has logged; -1 without metrics."""
    if not (run_dir / "metrics.jsonl").is_file():
        return -1
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return sum('"kind": "eval"' in line or '"kind": "final_eval"' in line for line in lines)


def _kept_train_key(key: str) -> bool:
    return (
        key in ("step", "kind", *_KEPT_TRAIN_KEYS)
        or key.startswith(_KEPT_TRAIN_PREFIXES)
        or (key.startswith("tasks/") and key.endswith(_KEPT_TASK_SUFFIXES))
        or (key.startswith("pairs/") and key.endswith("/critic_cosine"))
    )


def _rounded(value: object) -> object:
    return float(f"{value:.4g}") if isinstance(value, float) else value


QUARTERS = ("first", "last")


def finished_quarters(metrics: list[dict], steps: int):
    """(name, train records) of the first and the last quarter of ``steps`` (per task) that the
    run has finished: a quarter it is still in would skew a median."""
    reached = max((int(r["step"]) for r in metrics), default=0)
    for name, low, high in (("first", 0, steps / 4), ("last", 3 * steps / 4, steps)):
        if reached >= high:
            yield name, [r for r in metrics if r["kind"] == "train" and low < r["step"] <= high]


def load_record(record: Path) -> dict:
    """A record's curve with integer steps (JSON keys are strings)."""
    curve = json.loads(record.read_text())
    curve["points"] = {int(step): tasks for step, tasks in curve.get("points", {}).items()}
    curve["means"] = {int(step): mean for step, mean in curve["means"].items()}
    return curve


def add_arguments(
    parser: argparse.ArgumentParser, out: str, seeds: list[int], steps: int, eval_every: int
) -> None:
    """The options every learning benchmark takes (its seeds, budget, output folder)."""
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--steps", type=int, default=steps, help="steps per task")
    parser.add_argument("--eval-every", type=int, default=eval_every)
    parser.add_argument("--checkpoint-every", type=int, default=10_000)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--bootstrap-reps", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=ROOT / out)
    parser.add_argument("--report-only", action="store_true", help="no training: the report")
