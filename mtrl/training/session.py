"""One training run's lifecycle, whichever trainer runs it: the multi-task trainer and the
independent baseline each hold a ``RunSession`` and supply only what differs (how they build,
collect, update, evaluate and checkpoint).

The session owns the run directory while the run lives: its lock (one writer, ``mtrl.training.lock``),
checked writable and roomy enough before hours of training; ``config.yaml``; ``run.json`` with
its status, provenance and protocol; the W&B run; the logger; the stop signals (SIGINT, SIGTERM
and SIGHUP deferred to a step boundary); the callbacks; and how a run that fails is marked. A
failure is the same line and the same run.json for every trainer: a write the disk refused is
``RunWriteError`` naming the last good checkpoint, anything else is recorded as the reason.

Provenance: a number in a paper is only as good as what can be said about how it was made. Every
run records the code (mtrl version, git commit and whether the checkout had uncommitted changes),
the libraries that shape the numbers (torch, Meta-World, MuJoCo, gymnasium, numpy, Python), the
command line, the host, its processor and GPU, the times, and the evaluation protocol
(``mtrl.run.protocol``), which ``mtrl report`` compares before it puts runs in one table.
Checkpoints carry the same record.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import torch

from mtrl import plugins
from mtrl.callbacks import Callback, Callbacks
from mtrl.config import Config, save_config, to_dict
from mtrl.envs.base import MultiTaskVecEnv
from mtrl.errors import RunError, RunWriteError, counted
from mtrl.evaluation.protocol import TaskResult, mean_success
from mtrl.training import tracking
from mtrl.training.checkpoint import remove_partial_writes
from mtrl.training.cores import CoreShare
from mtrl.training.lock import RunLock, acquire
from mtrl.training.logging import METRICS_FILE, SUPERSEDED_METRICS_FILE, RunLogger
from mtrl.training.run import check_specs, check_updates, configure_torch, protocol, share_cores

DISTRIBUTION = "mtrl-suite"
LIBRARIES = ("torch", "metaworld", "mujoco", "gymnasium", "numpy")
# The independent baseline's checkpoint: which of its model sets is complete, at which step.
INDEPENDENT_STATE = Path("checkpoints", "independent", "state.json")
# What a disk says when it cannot take a write (an OSError without a file name, from write(2)).
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)


class Trains(Protocol):
    """What a trainer gives its session's ``run``: the step it is at, its loop, its final
    evaluation and where its last complete checkpoint is."""

    step: int

    def loop(self, logger: RunLogger) -> str | None:
        """Trains to ``total_steps``; returns what stopped it early (its checkpoint written)."""

    def final_evaluation(self, logger: RunLogger) -> dict[str, TaskResult]: ...

    def last_checkpoint(self) -> Path | None: ...


class RunSession:
    """A run directory held for one run: ``open(setup)``, ``start(...)`` from inside the setup,
    ``run(trainer)``, then ``close()`` (or leave a ``with`` block).

    Before anything is touched the config is checked (``check_updates``, then each registry's
    names: ``num_tasks`` for a run on a user's env object). ``open`` locks the directory, sets
    torch up for this process (``device``, ``cores``) and runs the trainer's setup under the lock,
    releasing it again if setup fails."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        resume: bool = False,
        callbacks: Callback | list[Callback] | None = None,
        num_tasks: int | None = None,
    ) -> None:
        self.callbacks = Callbacks(callbacks)
        check_updates(config)  # before the run directory is touched
        check_specs(config, num_tasks)
        self.config, self.run_dir, self.resume = config, Path(run_dir), resume
        self.lock: RunLock | None = None
        self.device = torch.device("cpu")
        self.cores: CoreShare | None = None
        self.tracker: tracking.WandbRun | None = None
        self.info: RunInfo | None = None
        self.failed = False
        self.signals: StopSignals | None = None

    # ---------------------------------------------------------------------------------- start
    def open(self, setup: Callable[[], None]) -> RunSession:
        self.lock = prepare_run_dir(self.run_dir, self.resume)
        try:
            self.device = configure_torch(self.config)
            self.cores = share_cores(self.config)
            setup()
        except OSError as error:
            self.lock.release()
            where = error.filename or self.run_dir
            raise RunError(f"{where}: {error.strerror or error} (starting the run)") from error
        except BaseException:
            self.lock.release()
            raise
        return self

    def start(
        self,
        step: int,
        task_names: list[str],
        parameter_counts: dict[str, int],
        env: MultiTaskVecEnv | None = None,
        **extra: Any,
    ) -> None:
        """What every run writes once its trainer is built (and restored, at ``step``): a
        resume's metrics records past its checkpoint set aside (the resumed run re-makes them),
        config.yaml, the W&B run, and run.json saying it runs (``extra``: more of what it
        records)."""
        config, run_dir = self.config, self.run_dir
        if self.resume:
            set_aside_metrics(run_dir, step)
        save_config(config, run_dir / "config.yaml")
        self.tracker, tracked = start_tracking(config, run_dir, self.resume)
        self.info = RunInfo(
            run_dir,
            config,
            task_names,
            parameter_counts,
            str(self.device),
            resume=self.resume,
            env=env,
            **extra,
            **tracked,
        )
        self.write_status("running", step)

    def check_free_space(self, needed: int) -> None:
        """A full disk fails the run now, not at its first checkpoint hours later."""
        free = shutil.disk_usage(self.run_dir).free
        if free < needed:
            raise RunError(
                f"{self.run_dir}: {free / 2**20:.0f} MiB free, but its checkpoints need about "
                f"{needed / 2**20:.0f} MiB (lower keep_checkpoints, or checkpoint_replay=false)"
            )

    # ------------------------------------------------------------------------------------ run
    def run(self, trainer: Trains) -> dict[str, TaskResult] | None:
        """Runs ``trainer``'s loop and final evaluation; returns the final evaluation, or None
        where a signal or a callback stopped it first.

        SIGINT/SIGTERM/SIGHUP finish the current step, write a checkpoint and return (the CLI exits
        0 and prints the resume command); SIGKILL leaves the last periodic checkpoint to resume
        from. A write the disk refuses (checkpoint, metrics, TensorBoard, run.json) raises
        ``RunWriteError``; any other failure is raised as it is. Either way run.json is marked
        failed, with the reason, where the disk still takes it.
        """
        try:
            return self._run(trainer)
        except Exception as error:
            failure = write_failure(
                error,
                self.run_dir,
                trainer.step,
                trainer.last_checkpoint(),
                lambda reason: self.mark_failed(reason, trainer.step),
            )
            if failure is not None:
                raise failure from error
            if not self.failed:  # a trainer's own stop (non-finite losses) said why already
                with contextlib.suppress(OSError):  # run.json says why, where the disk lets it
                    reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
                    self.mark_failed(reason, trainer.step)
            raise

    def _run(self, trainer: Trains) -> dict[str, TaskResult] | None:
        config = self.config
        with StopSignals() as self.signals:
            logger = RunLogger(
                self.run_dir, config.total_steps, trainer.step, config.progress, self.tracker
            )
            try:
                if self.cores is not None and (shared := self.cores.enter()):
                    logger.message(shared)
                config_text = (self.run_dir / "config.yaml").read_text()
                logger.text(
                    "config",
                    "".join(f"    {line}\n" for line in config_text.splitlines()),
                    trainer.step,
                )
                stopper = trainer.loop(logger)
                if stopper:
                    self.write_status("interrupted", trainer.step, f"stopped by {stopper}")
                    logger.message(
                        f"stopped by {stopper} at step {trainer.step}; checkpoint "
                        f"{trainer.last_checkpoint()}"
                    )
                    return None
                logger.message(
                    f"final evaluation: {counted(config.final_eval_episodes, 'episode')} per task"
                )
                results = trainer.final_evaluation(logger)
                logger.hparams(
                    tracking.hparams(to_dict(config)),
                    {"hparams/final_mean_success_rate": mean_success(results)},
                )
            finally:
                logger.close()
        self.write_status("finished", trainer.step)
        return results

    def evaluated(self, step: int, results: dict[str, TaskResult], final: bool) -> None:
        """After an evaluation the trainer has logged: W&B's final table, then the callbacks'
        ``on_eval``."""
        if final and self.tracker is not None:
            self.tracker.final_table(step, results)
        self.callbacks.fire("on_eval", step, results, final)

    def stop_requested(self) -> str | None:
        """What asks the run to stop at this step boundary (a signal, a callback), if anything."""
        received = self.signals.received if self.signals is not None else None
        return received or self.callbacks.stop_requested

    # ----------------------------------------------------------------------------- run.json
    def record(self) -> dict[str, Any]:
        """Provenance and protocol, as checkpoints carry them."""
        assert self.info is not None, "start() writes run.json first"
        return self.info.record()

    def write_status(self, status: str, step: int, reason: str | None = None) -> None:
        assert self.info is not None, "start() writes run.json first"
        self.info.write(status, step, reason)

    def mark_failed(self, reason: str, step: int) -> None:
        self.failed = True
        self.write_status("failed", step, reason)

    # ---------------------------------------------------------------------------------- close
    def close(self) -> None:
        """Finishes the W&B run, leaves the machine's cores and releases the lock."""
        try:
            if self.tracker is not None:
                self.tracker.finish(finished=not self.failed)
        finally:
            if self.cores is not None:
                self.cores.leave()
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ------------------------------------------------------------------------------ the directory
def prepare_run_dir(run_dir: Path, resume: bool) -> RunLock:
    """Locks the run directory for this process (one writer: ``mtrl.training.lock``) before anything is
    written in it, and fails fast (before hours of training) on one that cannot hold the run."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = acquire(run_dir)  # RunLockedError: another process writes it
    except OSError as error:
        raise RunError(f"run directory {run_dir} is not writable ({error.strerror})") from None
    try:
        if not resume and has_checkpoint(run_dir):
            raise RunError(
                f"{run_dir} already holds a run; pass --resume {run_dir} or another run_dir"
            )
        remove_partial_writes(run_dir)  # a killed writer's, now that no writer is live
        if not resume and (moved := set_aside_metrics(run_dir)):
            print(
                f"mtrl: {run_dir} held an attempt that stopped before its first checkpoint: "
                f"its {moved} metrics records were moved to {SUPERSEDED_METRICS_FILE}; "
                "starting afresh",
                file=sys.stderr,
            )
        probe = run_dir / ".write-test"
        probe.write_bytes(b"\0" * 1024)
        probe.unlink()
    except OSError as error:
        lock.release()
        raise RunError(f"run directory {run_dir} is not writable ({error.strerror})") from None
    except BaseException:
        lock.release()
        raise
    return lock


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run directory holds a checkpoint to resume from (a trainer's or the independent
    baseline's)."""
    return any(run_dir.glob("checkpoints/*.pt")) or (run_dir / INDEPENDENT_STATE).is_file()


def set_aside_metrics(run_dir: Path, after_step: int = -1) -> int:
    """Moves the ``metrics.jsonl`` records logged after ``after_step`` (all by default: a fresh
    start over an attempt that died before its first checkpoint) to ``metrics.superseded.jsonl``,
    so the records hold one attempt with each step once, and nothing is deleted: on resume the
    records past the checkpoint are re-made by the resumed run. Returns how many were moved (a
    torn line a kill left goes too)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return 0
    keep, superseded = [], []
    for line in path.read_text().splitlines():
        try:
            kept = json.loads(line)["step"] <= after_step
        except (json.JSONDecodeError, KeyError, TypeError):
            kept = False
        (keep if kept else superseded).append(line)
    if not superseded:
        return 0
    with open(run_dir / SUPERSEDED_METRICS_FILE, "a") as handle:
        handle.write("\n".join(superseded) + "\n")
    temporary = path.with_name(f".{path.name}.tmp")  # a full disk must not truncate the record
    try:
        temporary.write_text("".join(line + "\n" for line in keep))
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return len(superseded)


def write_failure(
    error: BaseException, run_dir: Path, step: int, last: Path | None, mark_failed
) -> RunWriteError | None:
    """The one line for a write into ``run_dir`` that the disk refused (checkpoints, metrics,
    TensorBoard, run.json and eval files name their path in the ``OSError``); None for any other
    error. ``mark_failed(reason)`` records it in run.json if the disk still takes that."""
    # The first failure, not one that followed it in cleanup (a close after a failed write).
    while (
        isinstance(error, OSError)
        and error.__cause__ is None
        and not error.__suppress_context__
        and isinstance(error.__context__, OSError)
    ):
        error = error.__context__
    if not isinstance(error, OSError):
        return None
    named = os.fspath(error.filename or "").startswith(os.fspath(run_dir))
    if not named and error.errno not in DISK_ERRNOS:
        return None  # not a write into the run directory (a broken pipe to an env worker, say)
    what = error.filename if named else f"to {run_dir}"
    reason = f"cannot write {what} ({error.strerror or error}) at step {step}"
    try:
        mark_failed(reason)
    except OSError:
        pass  # the disk that failed may not take run.json either
    kept = f"last good checkpoint: {last}" if last else "no checkpoint was written"
    return RunWriteError(
        f"{reason}; stopped, {kept}; free space (or fix the disk), then resume with: "
        f"mtrl train --resume {run_dir}"
    )


class StopSignals:
    """While active, SIGINT, SIGTERM and SIGHUP (the terminal was closed) only set ``received``:
    the loop stops at a step boundary, where everything is consistent, instead of dying
    mid-update or mid-write. A SIGHUP that the process was started ignoring (``nohup``) stays
    ignored: that run was meant to outlive its terminal."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # POSIX only, as mtrl.training.lock

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        try:
            for number in self.SIGNALS:
                if number == signal.SIGHUP and signal.getsignal(number) == signal.SIG_IGN:
                    continue
                self._previous[number] = signal.signal(number, self._handle)
        except ValueError:  # not the main thread: signals stay as they are
            self._previous.clear()
        return self

    def _handle(self, number: int, frame: object) -> None:
        self.received = signal.Signals(number).name

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


# ------------------------------------------------------------------------------------ run.json
def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """``git args`` in the checkout this package was imported from; None outside a checkout."""
    root = Path(__file__).resolve().parent.parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# The instruction sets a CPU's matmuls run on: virtual machines often name the processor only by
# its vendor line ("AMD EPYC"), which hides whether it has AVX-512, bf16 dot products or AMX.
MATMUL_ISA = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def hardware(device: str = "cpu") -> dict[str, Any]:
    """What the run's speed depends on: the processor (its name, the matmul instruction sets it
    has, its logical CPUs) and, for a run on CUDA, the GPU (a CPU run leaves CUDA
    uninitialised), so that update times are compared only between runs on the same hardware."""
    cpu, isa = None, None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and cpu is None:
                cpu = value.strip()
            elif key.strip() == "flags" and isa is None:
                isa = [flag for flag in MATMUL_ISA if flag in value.split()]
            if cpu is not None and isa is not None:
                break
    return {
        "cpu": cpu or platform.processor() or platform.machine() or None,
        "cpu_isa": isa,
        "logical_cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda") and torch.cuda.is_available()
        else None,
    }


def provenance(started_at: str | None = None, device: str = "cpu") -> dict[str, Any]:
    """Code, libraries, command, host, hardware and start time of this process (a resumed run
    records the hardware it resumed on)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return {
        "mtrl_version": _version(DISTRIBUTION),
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "versions": {"python": platform.python_version()}
        | {name: _version(name) for name in LIBRARIES},
        "command": shlex.join(argv),
        "host": socket.gethostname(),
        "hardware": hardware(device),
        "plugins": plugins.loaded(),  # group -> name -> "distribution version (module:attr)"
        "started_at": started_at or now(),
        "ended_at": None,
    }


class RunInfo:
    """Writes ``run.json``: status and step (kept true while the run goes on: rewritten at every
    checkpoint, and when the run ends, with the reason where it stopped early), tasks, parameter
    counts, device, provenance and protocol. A resumed run keeps its first start time and adds
    each resume to ``resumed_at``."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        task_names: list[str],
        parameter_counts: dict[str, int],
        device: str,
        resume: bool = False,
        env: MultiTaskVecEnv | None = None,
        **extra: Any,
    ) -> None:
        self.path = run_dir / "run.json"
        previous = read_run_info(run_dir) if resume else {}
        self.provenance = provenance(previous.get("provenance", {}).get("started_at"), device)
        self.resumed_at = list(previous.get("resumed_at", []))
        if previous.get("provenance"):
            self.resumed_at.append(now())
        self.fixed = {
            "task_names": task_names,
            "parameter_counts": parameter_counts,
            "device": device,
            **extra,
            "protocol": protocol(config, parameter_counts, env),
        }

    def record(self) -> dict[str, Any]:
        """Provenance and protocol, as checkpoints carry them."""
        return {"provenance": self.provenance, "protocol": self.fixed["protocol"]}

    def write(self, status: str, step: int, reason: str | None = None) -> None:
        """``status``: running, finished, interrupted or failed; ``reason``: why it stopped."""
        if status in ("finished", "interrupted", "failed"):
            self.provenance["ended_at"] = now()
        info: dict[str, Any] = {"status": status, "step": step}
        if reason:
            info["reason"] = reason
        info.update({**self.fixed, "provenance": self.provenance})
        if self.resumed_at:
            info["resumed_at"] = self.resumed_at
        temporary = self.path.with_suffix(".json.tmp")
        try:  # whole or not at all: a full disk leaves the previous run.json
            temporary.write_text(json.dumps(info, indent=2))
            temporary.replace(self.path)
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from error
        finally:
            temporary.unlink(missing_ok=True)


def start_tracking(
    config: Config, run_dir: Path, resume: bool
) -> tuple[tracking.WandbRun | None, dict[str, Any]]:
    """The run's W&B run (``tracking.start``: a resume goes on with the one run.json names) and
    what run.json keeps of it, as ``RunInfo`` extras."""
    previous = read_run_info(run_dir).get("wandb") if resume else None
    tracker, record = tracking.start(config, run_dir, previous)
    return tracker, ({"wandb": record} if record else {})


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """A run directory's run.json as a dict; empty where there is none or it is unreadable."""
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
