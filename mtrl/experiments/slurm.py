"""``mtrl sweep --backend slurm``: each job of a sweep a Slurm job (submitit), one array for all.

A job runs one run, or several at once where runs ask for a fraction of a GPU (``resources.gpus:
0.25``: four runs share a job and its one GPU; Slurm gives only whole GPUs). Each run is the same
``mtrl train`` process as on the other backends (``mtrl.experiments.sweep.execute_run``), so the rules are the
same: a finished run is skipped, an unfinished one resumes from its checkpoint, one another process
writes is left alone ("running elsewhere").

When a job nears its time limit or is preempted, Slurm signals it (``USR2``, ``signal_delay_s``
before the limit); submitit then calls the job's ``checkpoint()``, which stops its runs at a step
boundary (SIGTERM: each writes a checkpoint) and requeues the job, whose runs then resume from their
run directories. A run process keeps ``USR2`` blocked: Slurm signals every process of the job, and
the default action of ``USR2`` would end a run without its checkpoint.

The ``slurm:`` section of a sweep file (every key optional; ``--slurm-*`` flags override)::

    slurm:
      partition: gpu
      time_min: 1440        # each job's time limit, minutes (needed: Slurm's default may be minutes)
      cpus: 8               # per job (default: the runs' resources.cpus, rounded up, x runs per job)
      gpus: 1               # per job, whole (default: the runs' resources.gpus x runs per job)
      mem_gb: 32
      runs_per_job: 4       # default: 1 / resources.gpus for a fraction of a GPU, else 1
      account: myproject
      qos: normal
      constraint: a100
      signal_delay_s: 120   # the signal comes this long before the limit
      max_requeues: 20      # time limits and preemptions a job may have before it fails
"""

from __future__ import annotations

import math
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mtrl.errors import ConfigError

CLUSTERS = ("slurm", "local")  # local: submitit's local executor (real processes, this machine)
TEXT_KEYS = ("partition", "account", "qos", "constraint")
NUMBER_KEYS = ("time_min", "mem_gb")
WHOLE_KEYS = ("cpus", "gpus", "runs_per_job", "signal_delay_s", "max_requeues")
REQUEUE_SIGNAL = signal.SIGUSR2  # submitit's time-limit and preemption signal


@dataclass(frozen=True)
class SlurmOptions:
    """A sweep's Slurm job settings (its ``slurm:`` section, then the ``--slurm-*`` flags)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time_min: float | None = None
    mem_gb: float | None = None
    cpus: int | None = None
    gpus: int | None = None
    runs_per_job: int | None = None
    signal_delay_s: int = 120
    max_requeues: int = 20

    def merged(self, flags: dict[str, Any], where: str = "--slurm-* flags") -> SlurmOptions:
        """These options with ``flags`` (key -> value; None: not given) put over them."""
        given = {key: value for key, value in flags.items() if value is not None}
        slurm_options(given, where)
        return replace(self, **given)


def slurm_options(section: Any, where: str) -> SlurmOptions:
    """Reads and checks a ``slurm:`` section: unknown keys, and values no job can have."""
    if section is None:
        return SlurmOptions()
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: slurm must be a mapping of {', '.join(_keys())}")
    extra = sorted(set(map(str, section)) - set(_keys()))
    if extra:
        raise ConfigError(
            f"{where}: slurm: unknown key {', '.join(extra)} (allowed: {', '.join(_keys())})"
        )
    for key, value in section.items():
        if key in TEXT_KEYS and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{where}: slurm.{key} must be a non-empty name, got {value!r}")
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if key in NUMBER_KEYS and (not number or not value > 0 or math.isinf(value)):
            raise ConfigError(f"{where}: slurm.{key} must be a number > 0, got {value!r}")
        if key in WHOLE_KEYS:
            lowest = 0 if key in ("gpus", "max_requeues") else 1
            if not number or value != int(value) or value < lowest:
                hint = " (Slurm gives whole GPUs)" if key == "gpus" else ""
                raise ConfigError(
                    f"{where}: slurm.{key} must be a whole number >= {lowest}{hint}, got {value!r}"
                )
    return SlurmOptions(**{key: value for key, value in section.items()})


def _keys() -> list[str]:
    return sorted(field.name for field in fields(SlurmOptions))


@dataclass(frozen=True)
class JobShape:
    """What each job of a sweep holds and asks Slurm for."""

    runs_per_job: int
    cpus: int
    gpus: int
    threads: int  # torch threads of each run


def job_shape(cpus: float, gpus: float, options: SlurmOptions, name: str) -> JobShape:
    """Each job's runs and resources from the runs' ``resources`` (``cpus``, ``gpus`` per run) and
    the Slurm options; refuses, before anything is submitted, what no job can give."""
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(
            f"sweep {name}: each run asks for {gpus:g} GPUs (resources.gpus); Slurm gives whole "
            "GPUs: ask for a whole number, or a fraction below 1 (runs share a job's GPU)"
        )
    share = 0 < gpus < 1
    runs_per_job = options.runs_per_job or (int(1 / gpus + 1e-9) if share else 1)
    needed_gpus = math.ceil(runs_per_job * gpus - 1e-9)
    needed_cpus = runs_per_job * max(1, math.ceil(cpus))
    job_gpus = needed_gpus if options.gpus is None else options.gpus
    job_cpus = needed_cpus if options.cpus is None else options.cpus
    for noun, key, needed, given in (
        ("GPU", "gpus", needed_gpus, job_gpus),
        ("CPU", "cpus", needed_cpus, job_cpus),
    ):
        if given < needed:
            runs = f"{runs_per_job} runs" if runs_per_job > 1 else "1 run"
            raise ConfigError(
                f"sweep {name}: each job runs {runs} of {(gpus if key == 'gpus' else cpus):g} "
                f"{noun} (resources.{key}), {needed} in all, but slurm.{key} "
                f"(--slurm-{key}) gives it {given}; raise slurm.{key} or lower resources.{key}"
            )
    if options.time_min is None:
        raise ConfigError(
            f"sweep {name}: the slurm backend needs each job's time limit: slurm.time_min "
            "(--slurm-time-min), in minutes (a run past it is requeued and resumes)"
        )
    if options.signal_delay_s >= options.time_min * 60:
        raise ConfigError(
            f"sweep {name}: slurm.signal_delay_s ({options.signal_delay_s} s) must be shorter "
            f"than the time limit ({options.time_min:g} min)"
        )
    threads = max(1, job_cpus // runs_per_job)
    return JobShape(runs_per_job, job_cpus, job_gpus, threads)


class SweepJob:
    """One job: its runs at once, each an ``execute_run`` in a thread (``USR2`` blocked there, so
    that the run processes inherit it blocked). Checkpointable: submitit calls ``checkpoint()``
    at the time limit or a preemption, and requeues the ``SweepJob`` it returns."""

    def __init__(self, runs: list, threads: int, stop_wait_s: float) -> None:
        self.runs = list(runs)
        self.threads = threads
        self.stop_wait_s = stop_wait_s
        self._processes: dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"runs": self.runs, "threads": self.threads, "stop_wait_s": self.stop_wait_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["runs"], state["threads"], state["stop_wait_s"])

    def _execute(self, run) -> dict[str, Any]:
        from mtrl.experiments.sweep import execute_run

        signal.pthread_sigmask(signal.SIG_BLOCK, {REQUEUE_SIGNAL})

        def started(process: subprocess.Popen) -> None:
            with self._lock:
                self._processes[process.pid] = process

        return execute_run(run, self.threads, started=started)

    def __call__(self) -> list[dict[str, Any]]:
        pool = ThreadPoolExecutor(max_workers=len(self.runs))
        try:
            futures = [pool.submit(self._execute, run) for run in self.runs]
            return [future.result() for future in futures]
        except BaseException:  # cancelled (SIGINT), requeued (SystemExit): stop the runs cleanly
            self.stop_runs()
            raise
        finally:
            pool.shutdown(wait=False)

    def stop_runs(self) -> None:
        """SIGTERM to every run still going (each writes a checkpoint at its next step boundary
        and exits), then waits for them up to ``stop_wait_s``."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_wait_s
        while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
            time.sleep(0.1)

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit

        self.stop_runs()
        return submitit.helpers.DelayedSubmission(
            SweepJob(self.runs, self.threads, self.stop_wait_s)
        )


def sbatch_parameters(
    options: SlurmOptions, shape: JobShape, name: str, max_parallel: int | None = None
) -> dict[str, Any]:
    """``submitit.SlurmExecutor``'s parameters (its sbatch options) for a sweep's jobs."""
    parameters: dict[str, Any] = {
        "job_name": f"mtrl-{name}",
        "time": int(math.ceil(options.time_min or 0)),
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": shape.cpus,
        "signal_delay_s": options.signal_delay_s,
    }
    if shape.gpus:
        parameters["gpus_per_node"] = shape.gpus
    if options.mem_gb is not None:
        parameters["mem"] = f"{int(math.ceil(options.mem_gb * 1024))}MB"
    if max_parallel:
        parameters["array_parallelism"] = max_parallel
    for key in TEXT_KEYS:
        if getattr(options, key) is not None:
            parameters[key] = getattr(options, key)
    return parameters


def _executor(folder: Path, options: SlurmOptions, shape: JobShape, cluster: str, name: str,
              max_parallel: int | None):  # fmt: skip
    import submitit

    if cluster == "local":  # the same jobs, as processes of this machine
        executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(
            timeout_min=options.time_min,
            gpus_per_node=shape.gpus,
            tasks_per_node=1,
            signal_delay_s=options.signal_delay_s,
        )
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=options.max_requeues)
    executor.update_parameters(**sbatch_parameters(options, shape, name, max_parallel))
    return executor


def slurm_results(
    sweep,
    pending: list,
    say: Callable[[dict[str, Any]], None],
    options: SlurmOptions,
    cluster: str = "slurm",
    max_parallel: int | None = None,
    poll_s: float = 5.0,
) -> list[dict[str, Any]]:
    """``mtrl sweep``'s Slurm backend: submits the pending runs as one array of jobs (their
    submitit files under ``<out>/.submitit``), waits for the jobs, and returns one result per run,
    calling ``say`` on each as its job ends."""
    shape = job_shape(sweep.cpus, sweep.gpus, options, sweep.name)
    groups = [
        pending[k : k + shape.runs_per_job] for k in range(0, len(pending), shape.runs_per_job)
    ]
    stop_wait_s = max(1.0, options.signal_delay_s - 10.0)
    folder = pending[0].run_dir.parent.parent / ".submitit" / "%j"
    executor = _executor(folder, options, shape, cluster, sweep.name, max_parallel)
    jobs = executor.submit_array([SweepJob(group, shape.threads, stop_wait_s) for group in groups])
    waiting = dict(zip(jobs, groups, strict=True))
    results: list[dict[str, Any]] = []
    while waiting:
        for job in [job for job in waiting if job.done()]:
            group = waiting.pop(job)
            try:
                ended = job.result()
            except Exception as error:  # the job itself failed (too many requeues, a crash)
                last = [line for line in str(error).strip().splitlines() if line.strip()]
                message = f"job {job.job_id}: {last[-1] if last else type(error).__name__}"
                ended = [_failed(run, message[:300]) for run in group]
            for result in ended:
                say(result)
                results.append(result)
        if waiting:
            time.sleep(poll_s)
    return results


def _failed(run, error: str) -> dict[str, Any]:
    return {
        "label": run.label,
        "seed": run.seed,
        "run_dir": str(run.run_dir),
        "status": "failed",
        "error": error,
    }


def describe_jobs(count: int, shape: JobShape, options: SlurmOptions, cluster: str) -> str:
    """One line: the jobs a Slurm sweep would submit for ``count`` runs and what each asks for."""
    from mtrl.errors import counted

    where = f"partition {options.partition}" if options.partition else "the default partition"
    return (
        f"{cluster}: {counted(-(-count // shape.runs_per_job), 'job')} of "
        f"{counted(shape.runs_per_job, 'run')} on {where}, each {counted(shape.cpus, 'CPU')}, "
        f"{counted(shape.gpus, 'GPU')}, {options.time_min:g} min (requeued at the limit and resumed)"
    )
