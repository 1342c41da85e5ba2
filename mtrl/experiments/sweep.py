"""``mtrl sweep``: a grid of presets x seeds, each run a Ray task (or, without Ray, one after another).

A sweep file names the runs; every run is an ordinary ``mtrl train`` in its own process and run
directory (``<out>/<label>/seed<k>``), so a run that fails or is killed leaves the others alone, and
sweeping again skips the finished runs and resumes the unfinished ones from their checkpoints. A run
whose directory another process is writing (its lock is held: an earlier launch of the sweep still
going, a cluster job) is reported as "running elsewhere" and left alone, never launched a second
time::

    name: pcgrad_ablation_mt10
    seeds: 3                      # or a list: [0, 1, 2]
    out: runs/sweeps/pcgrad_ablation_mt10   # default: runs/sweeps/<name>
    overrides: [eval_every=20000] # applied to every run
    resources: {cpus: 1, gpus: 0} # what each run asks Ray for
    runs:
      - preset: mt10/pcgrad_paper/sac      # a shipped preset's name, or a file
      - preset: ../my_presets/pcgrad.yaml  # (relative to the sweep file)
        overrides: [agent.diagnostics_every=500]
    grid:                         # beside (or instead of) runs: one run per combination of values
      preset: mt10/pcgrad_paper/sac
      overrides: [agent.diagnostics_every=500]     # applied to every run of the grid
      label: "SAC lr={agent.actor_lr}"             # default: the keys and values, "k=v k=v"
      values: {agent.actor_lr: [0.001, 0.0003], agent.hidden_sizes: [[400, 400], [160, 160]]}

The whole file is checked (keys, presets, every run's config) before anything starts. A
``slurm:`` section sets the jobs of ``--backend slurm`` (``mtrl.experiments.slurm``).

The backends (``BACKENDS``) share one interface, for whatever drives sweeps (``run_sweep``, a
tuner): ``backend(sweep, pending, say, **its options) -> results``, where ``pending`` are the
``SweepRun``s to run, ``say`` is called with each run's result as it ends, and every result is
``execute_run``'s dict (``label``, ``seed``, ``run_dir``, ``status``, ``error``). Each backend runs
each run as ``execute_run`` does: one ``mtrl train`` process, in the run's directory.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl.config import ConfigError, load_yaml, method_label
from mtrl.errors import RunError, counted
from mtrl.experiments.slurm import SlurmOptions, slurm_options
from mtrl.extras import install_hint
from mtrl.presets import resolve
from mtrl.training import tracking
from mtrl.training.checkpoint import step_checkpoints
from mtrl.training.cores import usable_cores
from mtrl.training.lock import describe, holder
from mtrl.training.run import build_run_config

RUNNING_ELSEWHERE = "running elsewhere"  # the status of a run another process is writing
PLANNED = {"new": "new", "resumable": "resume", "finished": "skipped (finished)"}
"""The status a sweep gives a run nobody writes, by its ``run_state``."""
TO_RUN = (PLANNED["new"], PLANNED["resumable"])
SWEEP_KEYS = {"name", "seeds", "out", "overrides", "resources", "runs", "grid", "slurm"}
BACKENDS = ("ray", "local", "slurm")
RUN_KEYS = {"preset", "overrides", "label"}
GRID_KEYS = {"preset", "overrides", "label", "values"}
LABEL_FIELD = re.compile(r"\{([^{}]*)\}")  # {key} in a grid's label template
RESOURCE_KEYS = {"cpus", "gpus"}
SWEEP_SETS = {"seed": "seed (list seeds under seeds:)", "run_dir": "run directory (set out:)"}
"""The keys a sweep sets on every run itself, after the overrides: an override of one would be
silently replaced, so it is refused."""


@dataclass(frozen=True)
class SweepRun:
    label: str
    preset: Path | None
    overrides: tuple[str, ...]
    seed: int
    run_dir: Path

    def train_args(self, threads: int) -> list[str]:
        """``mtrl train`` arguments: resume when a checkpoint exists, else start."""
        if run_state(self.run_dir) == "resumable":
            return ["train", "--resume", str(self.run_dir), "progress=false"]
        preset = ["--config", str(self.preset)] if self.preset else []
        return [
            "train",
            *preset,
            f"torch_threads={threads}",
            *self.overrides,
            f"seed={self.seed}",
            f"label={self.label}",
            f"run_dir={self.run_dir}",
            "progress=false",
        ]


@dataclass(frozen=True)
class Sweep:
    name: str
    runs: list[SweepRun]
    cpus: float
    gpus: float
    slurm: SlurmOptions = SlurmOptions()


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() or c in "+-." else "_" for c in text)
    return "_".join(filter(None, slug.split("_")))


def _as_overrides(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: overrides must be a list of key=value strings")
    return tuple(value)


def _unknown(keys: set[str], allowed: set[str], where: str) -> None:
    extra = sorted(keys - allowed)
    if extra:
        raise ConfigError(
            f"{where}: unknown key {', '.join(extra)} (allowed: {', '.join(sorted(allowed))})"
        )


def _grid_entries(grid: Any, where: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The runs of a grid as run entries (its overrides, then one value of each key), in the
    order of its values' cartesian product, each with its short name and its name in messages."""
    if not isinstance(grid, dict):
        raise ConfigError(f"{where}: grid must be a mapping with {', '.join(sorted(GRID_KEYS))}")
    _unknown(set(grid), GRID_KEYS, f"{where}: grid")
    values = grid.get("values")
    if not isinstance(values, dict) or not values:
        raise ConfigError(
            f"{where}: grid: values must be a non-empty mapping of override keys to lists of values"
        )
    choices = []
    for key, options in values.items():
        if not isinstance(options, list) or not options:
            raise ConfigError(f"{where}: grid: values.{key} must be a non-empty list")
        texts = [option if isinstance(option, str) else json.dumps(option) for option in options]
        choices.append([(str(key), text) for text in texts])
    template = grid.get("label")
    for field in LABEL_FIELD.findall(str(template or "")):
        if field not in {str(key) for key in values}:
            raise ConfigError(
                f"{where}: grid: label '{template}' names {{{field}}}, not a key of values"
            )
    common = _as_overrides(grid.get("overrides"), f"{where}: grid")
    entries = []
    for k, combination in enumerate(itertools.product(*choices)):
        chosen = dict(combination)
        overrides = [f"{key}={text}" for key, text in combination]
        label = (
            LABEL_FIELD.sub(lambda field, chosen=chosen: chosen[field.group(1)], str(template))
            if template
            else " ".join(overrides)
        )
        entry = {"preset": grid.get("preset"), "overrides": [*common, *overrides], "label": label}
        entries.append((f"grid[{k}]", f"grid[{k}] ({', '.join(overrides)})", entry))
    return entries


def load_sweep(path: str | Path, seeds: int | None = None, out: str | Path | None = None) -> Sweep:
    """Reads and checks a sweep file (a path, or a shipped one's name: ``sweeps/<name>``);
    ``seeds`` (a count) and ``out`` override the file's."""
    path = resolve(path)
    data = load_yaml(path)
    _unknown(set(data), SWEEP_KEYS, str(path))
    name = str(data.get("name") or path.stem)
    seed_spec = seeds if seeds is not None else data.get("seeds", 1)
    if isinstance(seed_spec, bool) or not isinstance(seed_spec, (int, list)):
        raise ConfigError(f"{path}: seeds must be a count or a list of integers")
    seed_list = list(range(seed_spec)) if isinstance(seed_spec, int) else seed_spec
    if not seed_list or not all(isinstance(s, int) and s >= 0 for s in seed_list):
        raise ConfigError(f"{path}: seeds must be a positive count or non-negative integers")
    resources = data.get("resources") or {}
    if not isinstance(resources, dict):
        raise ConfigError(f"{path}: resources must be a mapping (cpus, gpus)")
    _unknown(set(resources), RESOURCE_KEYS, f"{path}: resources")
    cpus, gpus = resources.get("cpus", 1), resources.get("gpus", 0)
    for key, value in (("cpus", cpus), ("gpus", gpus)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"{path}: resources.{key} must be a number >= 0, got {value!r}")
    slurm = slurm_options(data.get("slurm"), str(path))
    common = _as_overrides(data.get("overrides"), str(path))
    # Absolute, so that Ray workers find it whatever their working directory (on a cluster it must
    # be a filesystem every node shares).
    root = (Path(out) if out else Path(data.get("out") or Path("runs") / "sweeps" / name)).resolve()
    listed = data.get("runs", [] if "grid" in data else None)
    if not isinstance(listed, list) or not (listed or "grid" in data):
        raise ConfigError(f"{path}: runs must be a non-empty list of {{preset, overrides, label}}")
    entries = [(f"runs[{k}]", f"runs[{k}]", entry) for k, entry in enumerate(listed)]
    if "grid" in data:
        entries += _grid_entries(data["grid"], str(path))

    runs: list[SweepRun] = []
    labels: dict[str, str] = {}  # label -> the run that has it
    slugs: dict[str, tuple[str, str]] = {}  # run directory name -> the run and label that have it
    for k, name_in_messages, entry in entries:
        where = f"{path}: {name_in_messages}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with preset/overrides/label")
        _unknown(set(entry), RUN_KEYS, where)
        preset = resolve(entry["preset"], path.parent).resolve() if entry.get("preset") else None
        overrides = common + _as_overrides(entry.get("overrides"), where)
        for item in overrides:
            key = item.partition("=")[0].strip()
            if key in SWEEP_SETS:
                raise ConfigError(
                    f"{where}: override '{item}' would be replaced by the sweep's {SWEEP_SETS[key]}"
                )
        try:
            config = build_run_config(preset, list(overrides))
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        if tracking.wanted(config) and not config.wandb.group:  # one W&B group per sweep
            overrides = (*overrides, f"wandb.group={name}")
        label = str(entry.get("label") or method_label(config))
        if label in labels:
            raise ConfigError(f"{where}: label '{label}' repeats {labels[label]}")
        labels[label] = k
        slug = _slug(label)
        if slug in ("", ".", ".."):
            raise ConfigError(
                f"{where}: label '{label}' names no directory of its own under {root}"
            )
        if slug in slugs:
            other, other_label = slugs[slug]
            raise ConfigError(
                f"{where}: label '{label}' has the run directory {slug} of {other} "
                f"('{other_label}'); give the runs labels that differ in letters or digits"
            )
        slugs[slug] = (k, label)
        for seed in seed_list:
            run_dir = root / slug / f"seed{seed}"
            runs.append(SweepRun(label, preset, overrides, seed, run_dir))
    return Sweep(name, runs, float(cpus), float(gpus), slurm)


def plan(sweep: Sweep) -> list[dict[str, Any]]:
    """Each run with the status sweeping now gives it (one of ``TO_RUN``, "skipped (finished)",
    or "running elsewhere"); reads the run directories, writes nothing."""
    rows = []
    for run in sweep.runs:
        writer = holder(run.run_dir)
        if writer is not None:
            rows.append(_elsewhere(run, writer))
            continue
        status = PLANNED[run_state(run.run_dir)]
        rows.append(
            {
                "label": run.label,
                "seed": run.seed,
                "run_dir": str(run.run_dir),
                "status": status,
                "error": "",
            }
        )
    return rows


def plan_summary(name: str, planned: list[dict[str, Any]]) -> str:
    """One line: how many runs, how many already finished, running elsewhere, and to run."""
    count = Counter(row["status"] for row in planned)
    busy = f"{count[RUNNING_ELSEWHERE]} {RUNNING_ELSEWHERE}, " if count[RUNNING_ELSEWHERE] else ""
    return (
        f"sweep {name}: {counted(len(planned), 'run')}, {count[PLANNED['finished']]} finished "
        f"already, {busy}{sum(count[status] for status in TO_RUN)} to run"
    )


def run_state(run_dir: Path) -> str:
    """ "finished", "resumable" (a checkpoint to continue from) or "new"."""
    info_path = run_dir / "run.json"
    if info_path.is_file():
        try:
            if json.loads(info_path.read_text()).get("status") == "finished":
                return "finished"
        except (json.JSONDecodeError, OSError):
            pass
    independent = (run_dir / "checkpoints" / "independent" / "state.json").is_file()
    return "resumable" if step_checkpoints(run_dir) or independent else "new"


def _elsewhere(run: SweepRun, writer: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": run.label,
        "seed": run.seed,
        "run_dir": str(run.run_dir),
        "status": RUNNING_ELSEWHERE,
        "error": describe(run.run_dir, writer),
    }


def execute_run(
    run: SweepRun, threads: int, started: Callable[[subprocess.Popen], None] | None = None
) -> dict[str, Any]:
    """One ``mtrl train`` process; its output goes to ``<run_dir>.log``. Never raises. A run whose
    directory another process writes is not launched (nor is its log touched). ``started`` is
    given the process once it runs (a backend that must stop it: a Slurm job at its limit)."""
    writer = holder(run.run_dir)
    if writer is not None:
        return _elsewhere(run, writer)
    state = run_state(run.run_dir)
    run.run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run.run_dir.parent / f"{run.run_dir.name}.log"
    start = time.perf_counter()
    with log_path.open("a") as log:
        log.write(f"\n$ mtrl {' '.join(run.train_args(threads))}\n")
        log.flush()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mtrl.cli", *run.train_args(threads)],
                stdout=log,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            if started is not None:
                started(process)
            error_text, returncode = process.communicate()[1], process.returncode
        except OSError as error:
            error_text, returncode = str(error), -1
        log.write(error_text)
    lines = [line for line in error_text.strip().splitlines() if line.strip()]
    ok = returncode == 0 and run_state(run.run_dir) == "finished"
    writer = None if ok else holder(run.run_dir)
    if writer is not None:  # another writer took it between the check above and the launch
        return _elsewhere(run, writer)
    return {
        "label": run.label,
        "seed": run.seed,
        "run_dir": str(run.run_dir),
        "status": "finished" if ok else "failed",
        "started_as": state,
        "seconds": round(time.perf_counter() - start, 1),
        "error": "" if ok else (lines[-1] if lines else f"exit code {returncode}"),
        "log": str(log_path),
    }


def _amount(number: float, noun: str) -> str:
    text = f"{number:g}"
    return f"{text} {noun}" if number <= 1 else f"{text} {noun}s"


def check_resources(sweep: Sweep, cpus: float, gpus: float, where: str) -> None:
    """Refuses a sweep whose runs each ask for more than ``where`` has (``cpus``, ``gpus``): Ray
    would wait for them forever, silently."""
    for key, asked, have, noun in (
        ("gpus", sweep.gpus, gpus, "GPU"),
        ("cpus", sweep.cpus, cpus, "CPU"),
    ):
        if asked > have:
            has = f"{have:g}" if have else "none"
            raise ConfigError(
                f"sweep {sweep.name}: each run asks for {_amount(asked, noun)} (resources.{key}) "
                f"but {where} has {has}; lower resources.{key} or run the sweep where they exist"
            )


def check_local_resources(sweep: Sweep, num_cpus: int | None = None) -> None:
    """``check_resources`` against this machine (or the local Ray's ``--num-cpus``)."""
    import torch

    where = f"the local Ray (--num-cpus {num_cpus})" if num_cpus else "this machine"
    check_resources(sweep, num_cpus or usable_cores(), torch.cuda.device_count(), where)


def _ray_results(
    sweep: Sweep,
    pending: list[SweepRun],
    address: str | None,
    max_parallel: int | None,
    num_cpus: int | None,
    say,
) -> list[dict[str, Any]]:
    import ray

    init: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False}
    if address:
        init["address"] = address
    else:
        init["include_dashboard"] = False
        if num_cpus:
            init["num_cpus"] = num_cpus
    ray.init(**init)
    try:
        if address:
            have = ray.cluster_resources()
            where = f"the Ray cluster at {address}"
            check_resources(sweep, have.get("CPU", 0), have.get("GPU", 0), where)
        task = ray.remote(num_cpus=sweep.cpus, num_gpus=sweep.gpus, max_retries=0)(execute_run)
        threads = max(1, int(sweep.cpus))
        queue, running, results = list(pending), {}, []
        limit = max_parallel or len(queue)
        while queue or running:
            while queue and len(running) < limit:
                run = queue.pop(0)
                running[task.remote(run, threads)] = run
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                run = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as error:  # the worker itself died: report, go on
                    result = {
                        "label": run.label,
                        "seed": run.seed,
                        "run_dir": str(run.run_dir),
                        "status": "failed",
                        "error": " ".join(str(error).split())[:300],
                    }
                say(result)
                results.append(result)
        return results
    finally:
        ray.shutdown()


def run_sweep(
    sweep: Sweep,
    address: str | None = None,
    max_parallel: int | None = None,
    num_cpus: int | None = None,
    use_ray: bool = True,
    say=print,
    backend: str | None = None,
    slurm: SlurmOptions | None = None,
    cluster: str = "slurm",
) -> list[dict[str, Any]]:
    """Runs every unfinished run of the sweep; returns one result per run (skipped ones too: those
    finished, and those another process is writing, "running elsewhere"). ``backend``: one of
    ``BACKENDS`` (default: Ray where installed, else one by one; ``use_ray=False``: one by one);
    ``slurm``: the Slurm options (default: the sweep file's), ``cluster``: "local" runs the Slurm
    backend's jobs on this machine (submitit's local executor). A sweep whose runs ask for more
    than the machine (or the cluster at ``address``, or a Slurm job) has is refused before any
    starts."""
    backend = check_backend(sweep, backend, address, num_cpus, use_ray, slurm, cluster, say)
    planned = plan(sweep)
    pending = [run for run, row in zip(sweep.runs, planned, strict=True) if row["status"] in TO_RUN]
    results = [row for row in planned if row["status"] not in TO_RUN]
    elsewhere = [r for r in results if r["status"] == RUNNING_ELSEWHERE]
    say(plan_summary(sweep.name, planned))

    def report(result: dict[str, Any]) -> None:
        note = f" ({result['error']})" if result["status"] in ("failed", RUNNING_ELSEWHERE) else ""
        say(
            f"  {result['status']:<8} {result['label']} seed {result['seed']}: {result['run_dir']}{note}"
        )

    for result in elsewhere:
        report(result)

    if not pending:
        return results
    if backend == "slurm":
        from mtrl.experiments.slurm import slurm_results

        options = slurm or sweep.slurm
        return results + slurm_results(sweep, pending, report, options, cluster, max_parallel)
    if backend == "ray":
        return results + _ray_results(sweep, pending, address, max_parallel, num_cpus, report)
    return results + local_results(sweep, pending, report)


def check_backend(
    sweep: Sweep,
    backend: str | None,
    address: str | None = None,
    num_cpus: int | None = None,
    use_ray: bool = True,
    slurm: SlurmOptions | None = None,
    cluster: str = "slurm",
    say=print,
    submitting: bool = True,
) -> str:
    """The backend a sweep runs on (``backend``, or Ray where installed, else "local"), after the
    checks that need nothing started: the resources each run asks for against this machine (not
    for a cluster: Ray's is checked once connected), and the Slurm jobs' shape (and, when
    ``submitting``, that Slurm's ``sbatch`` is here)."""
    if backend not in (None, *BACKENDS):
        raise ConfigError(f"unknown backend '{backend}' (one of: {', '.join(BACKENDS)})")
    if backend is None:
        backend = "ray" if use_ray else "local"
    if backend == "ray" and "ray" not in sys.modules and importlib.util.find_spec("ray") is None:
        if address:
            raise ConfigError(f"--address needs Ray: {install_hint('ray')}")
        say(f"Ray is not installed ({install_hint('ray')}): running the runs one by one")
        backend = "local"
    if backend == "slurm":
        from mtrl.experiments.slurm import CLUSTERS, job_shape

        if importlib.util.find_spec("submitit") is None:
            raise ConfigError(f"--backend slurm needs submitit: {install_hint('submitit')}")
        if cluster not in CLUSTERS:
            raise ConfigError(f"unknown Slurm cluster '{cluster}' (one of: {', '.join(CLUSTERS)})")
        job_shape(sweep.cpus, sweep.gpus, slurm or sweep.slurm, sweep.name)
        if submitting and cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError(
                "--backend slurm submits with sbatch, which is not on PATH: run the sweep on a "
                "Slurm login node"
            )
    if (backend == "slurm" and cluster == "local") or (backend != "slurm" and not address):
        check_local_resources(sweep, None if backend == "slurm" else num_cpus)
    return backend


def local_results(
    sweep: Sweep, pending: list[SweepRun], say: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """The local backend: the runs one after another, in this machine's processes."""
    threads = max(1, int(sweep.cpus))
    results = []
    for run in pending:
        result = execute_run(run, threads)
        say(result)
        results.append(result)
    return results


CALIBRATION_WINDOW = 200
"""Steps per task of each of the two timed windows an estimate measures per distinct run."""


def measure_rates(run: SweepRun, threads: int, window: int = CALIBRATION_WINDOW) -> list[float]:
    """Env steps/s of ``run``'s config over two timed windows of ``window`` steps per task, after a
    lead-in (the warm-up, shortened to one window, and the first updates: ``mtrl.experiments.bench``'s), in a
    fresh ``mtrl train`` process as the sweep would start it (``execute_run``), in a temporary
    directory, without evaluations, checkpoints or W&B."""
    import tempfile

    from mtrl.experiments.bench import lead_in
    from mtrl.training.logging import read_metrics

    total = lead_in(window, window) + 2 * window
    timing = (
        f"total_steps={total}",
        f"warmup_steps={window}",
        f"log_every={window}",
        f"replay_capacity_per_task={total}",
        "eval_every=0",
        "checkpoint_every=0",
        "final_eval_episodes=1",
        "wandb.mode=disabled",
    )
    with tempfile.TemporaryDirectory() as directory:
        timed = SweepRun(
            run.label, run.preset, (*run.overrides, *timing), run.seed, Path(directory) / "run"
        )
        result = execute_run(timed, threads)
        if result["status"] != "finished":
            raise RunError(f"estimate: the timed window of '{run.label}' failed: {result['error']}")
        records = [r for r in read_metrics(timed.run_dir) if r["kind"] == "train"]
    rates = [r["charts/env_steps_per_s"] for r in records if "charts/env_steps_per_s" in r][-2:]
    if not rates:
        raise RunError(f"estimate: the timed window of '{run.label}' logged no env steps/s")
    return rates


def run_hours(run: SweepRun, rates: list[float]) -> tuple[float, float]:
    """The hours ``run`` takes at the slowest and the fastest of ``rates`` (env steps/s): its
    training steps (``total_steps`` x tasks), and its evaluation steps (every periodic one and the
    final one, whole episodes) counted at the training rate, an upper bound for them (evaluation
    makes no updates)."""
    from mtrl.envs import episode_steps, resolve_task_names

    config = build_run_config(run.preset, list(run.overrides))
    tasks = len(resolve_task_names(config.env.name))
    evaluations = config.total_steps // config.eval_every if config.eval_every > 0 else 0
    episodes = evaluations * config.eval_episodes + config.final_eval_episodes
    length = episode_steps(config.env.name, config.env.max_episode_steps)
    steps = tasks * (config.total_steps + episodes * length)
    return steps / min(rates) / 3600, steps / max(rates) / 3600


def estimate_sweep(
    sweep: Sweep,
    window: int = CALIBRATION_WINDOW,
    rates: dict[str, list[float]] | None = None,
    say=print,
) -> dict[str, Any]:
    """The sweep's cost in machine-hours (hours of one run on its ``resources.cpus`` threads of
    this machine), per run and in all, from each distinct run's (label's) measured rates
    (``measure_rates``; ``rates``: label -> rates measured before). Each is a range: the slower
    and the faster timed window. Finished runs count in the total, not in "to run"."""
    measured = dict(rates or {})
    threads = max(1, int(sweep.cpus))
    statuses = [row["status"] for row in plan(sweep)]
    rows: dict[str, dict[str, Any]] = {}
    for run, status in zip(sweep.runs, statuses, strict=True):
        if run.label not in measured:
            say(f"timing {run.label}: {2 * window} steps per task ...")
            measured[run.label] = measure_rates(run, threads, window)
        slow, fast = run_hours(run, measured[run.label])
        row = rows.setdefault(
            run.label,
            {"label": run.label, "rates": measured[run.label], "runs": 0, "to_run": 0},
        )
        row.update(hours_per_run=(slow, fast))  # every seed: the same steps
        row["runs"] += 1
        row["to_run"] += status != PLANNED["finished"]
    total = [sum(r["hours_per_run"][k] * r["runs"] for r in rows.values()) for k in (0, 1)]
    left = [sum(r["hours_per_run"][k] * r["to_run"] for r in rows.values()) for k in (0, 1)]
    return {
        "name": sweep.name,
        "rows": list(rows.values()),
        "rates": measured,
        "runs": len(sweep.runs),
        "to_run": sum(r["to_run"] for r in rows.values()),
        "machine_hours": tuple(total),
        "machine_hours_to_run": tuple(left),
        "threads": threads,
        "window": window,
    }


def format_estimate(estimate: dict[str, Any]) -> str:
    def hours(pair: tuple[float, float]) -> str:
        slow, fast = pair
        return f"{fast:.3g}-{slow:.3g}" if f"{fast:.3g}" != f"{slow:.3g}" else f"{slow:.3g}"

    lines = [
        f"sweep {estimate['name']}: cost estimate (machine-hours: one run on "
        f"{estimate['threads']} thread{'s' if estimate['threads'] != 1 else ''} of this machine)",
        "| method | env steps/s | hours per run | runs | hours |",
        "|---|---|---|---|---|",
    ]
    for row in estimate["rows"]:
        rates = "-".join(f"{rate:.0f}" for rate in sorted(row["rates"]))
        total = tuple(h * row["runs"] for h in row["hours_per_run"])
        lines.append(
            f"| {row['label']} | {rates} | {hours(row['hours_per_run'])} | {row['runs']} "
            f"| {hours(total)} |"
        )
    lines.append(
        f"total: {hours(estimate['machine_hours'])} machine-hours for "
        f"{counted(estimate['runs'], 'run')}; {hours(estimate['machine_hours_to_run'])} for the "
        f"{estimate['to_run']} not finished"
    )
    lines.append(
        f"measured: two windows of {estimate['window']} steps per task of each method, early in a "
        "run (the range is the slower and the faster); evaluation counted at the training rate "
        "(an upper bound); another machine (a cluster node, a GPU) has other rates: estimate there"
    )
    return "\n".join(lines)


def format_results(results: list[dict[str, Any]]) -> str:
    lines = ["| method | seed | status | run directory |", "|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["label"], r["seed"])):
        lines.append(f"| {r['label']} | {r['seed']} | {r['status']} | {r['run_dir']} |")
    return "\n".join(lines)


__all__ = [
    "BACKENDS",
    "RUNNING_ELSEWHERE",
    "Sweep",
    "SweepRun",
    "check_backend",
    "estimate_sweep",
    "execute_run",
    "format_estimate",
    "local_results",
    "load_sweep",
    "plan",
    "plan_summary",
    "run_state",
    "run_sweep",
]
