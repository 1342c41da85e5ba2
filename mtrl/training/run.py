"""What every run shares, whichever trainer runs it and whoever evaluates it afterwards.

- The config a run may start from (``check_specs``: each registry checks its own names).
- Its directory: locked for one writer, checked writable and roomy enough before hours of
  training (``prepare_run_dir``, ``start_locked``, ``check_free_space``), disk failures turned into
  one line (``write_failure``), and SIGINT/SIGTERM/SIGHUP deferred to a step boundary
  (``StopSignals``).
- The torch settings of a training process (``configure_torch``) and its envs as the config sets
  them (``env_options``, ``make_eval_env`` with the evaluation seed offset).
- ``run.json``: provenance and protocol. A number in a paper is only as good as what can be said about how it was made. Every run records
the code (mtrl version, git commit and whether the checkout had uncommitted changes), the libraries
that shape the numbers (torch, Meta-World, MuJoCo, gymnasium, numpy, Python), the command line, the
host and the times, and the evaluation protocol (``protocol``), which ``mtrl report`` compares
before it puts runs in one table. Checkpoints carry the same record.
"""

from __future__ import annotations

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
from typing import Any

import torch

from mtrl import envs, gradients, plugins
from mtrl.agents import networks
from mtrl.config import Config, build_config
from mtrl.envs import episode_steps, is_metaworld, make_env, resolve_task_names
from mtrl.envs.base import MultiTaskVecEnv
from mtrl.errors import ConfigError, RunError, RunWriteError
from mtrl.evaluation.protocol import EVAL_SEED_OFFSET, GOAL_SCHEME
from mtrl.extras import require
from mtrl.training import tracking
from mtrl.training.checkpoint import remove_partial_writes
from mtrl.training.cores import CoreShare
from mtrl.training.lock import RunLock, acquire
from mtrl.training.logging import METRICS_FILE, SUPERSEDED_METRICS_FILE

DISTRIBUTION = "mtrl-suite"
LIBRARIES = ("torch", "metaworld", "mujoco", "gymnasium", "numpy")
# The protocol fields that must agree for runs to share a table (seeds and sizes may differ).
COMPARED_PROTOCOL_FIELDS = (
    "env",
    "reward_version",
    "max_episode_steps",
    "final_eval_episodes",
    "goal_scheme",
    "steps_per_task",
)


def check_specs(config: Config, num_tasks: int | None = None) -> Config:
    """The names of registered things in a config, each checked by its own registry (env and
    tasks, gradient methods, networks with their options, widths and initialisation): one
    ConfigError line for the first bad one. ``config.validate`` checks plain values. A run on a
    user's env object (``num_tasks`` given) has no env name to check."""
    if num_tasks is None:
        num_tasks = envs.check_spec(config.env.name)
    agent = config.agent
    for key, spec in (
        ("agent.actor_grad", agent.actor_grad),
        ("agent.critic_grad", agent.critic_grad),
    ):
        gradients.check_spec(key, spec)
    bodies = (
        ("agent.actor", agent.actor, 2 * 4),  # mean and log std of up to 4 actions
        ("agent.critic", agent.critic, 1 if agent.critic_loss == "mse" else agent.bins),
    )
    for key, spec, _ in bodies:  # every size bounded before any body is built
        networks.check_sizes(key, spec, agent.hidden_sizes)
    embedding = agent.task_embedding_dim if agent.task_encoding == "embedding" else 0
    for key, spec, outputs in bodies:
        networks.check_spec(
            key, spec, agent.hidden_sizes, num_tasks, agent.init, outputs, embedding
        )
    tracking.check_available(config)
    if config.eval_video_every:
        require("imageio", "eval_video_every")
    if config.agent.algorithm == "independent":
        require("stable_baselines3", "agent.algorithm=independent")
    return config


def check_updates(config: Config) -> Config:
    """Refuses a run that would never update its networks: it would "finish" untrained, with
    exit 0. Run configs only: a finished run's saved config is never refused by this."""
    agent = config.agent
    if config.warmup_steps >= config.total_steps:
        raise ConfigError(
            f"warmup_steps ({config.warmup_steps}) >= total_steps ({config.total_steps}): the "
            "run would end before its first update"
        )
    if agent.algorithm == "independent":  # SB3 updates every step past its warm-up
        return config
    if config.replay_capacity_per_task < agent.batch_size_per_task:
        raise ConfigError(
            f"replay_capacity_per_task ({config.replay_capacity_per_task}) < "
            f"agent.batch_size_per_task ({agent.batch_size_per_task}): the replay never holds "
            "one batch, so the run would never update"
        )
    if agent.batch_size_per_task > config.total_steps:
        raise ConfigError(
            f"agent.batch_size_per_task ({agent.batch_size_per_task}) > total_steps "
            f"({config.total_steps}): the replay never holds one batch, so the run would never "
            "update"
        )
    # The trainer's loop: steps from max(warm-up, batch - 1) on may update, each adding
    # updates_per_step to a credit that must reach 1 (summed as the loop sums it).
    steps = config.total_steps - max(config.warmup_steps, agent.batch_size_per_task - 1)
    credit = steps * config.updates_per_step
    if abs(credit - 1.0) < 1e-6:
        credit = 0.0
        for _ in range(steps):
            credit += config.updates_per_step
    if credit < 1.0:
        raise ConfigError(
            f"updates_per_step={config.updates_per_step} over the {steps} steps that may update "
            "gives no update (raise it, or total_steps)"
        )
    return config


def build_run_config(preset: str | Path | None, overrides: list[str] | None = None) -> Config:
    """``config.build_config``, the registries' checks and ``check_updates``: the config a run may
    start from."""
    return check_specs(check_updates(build_config(preset, overrides)))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    return torch.device(name)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """``git args`` in the checkout this package was imported from; None outside a checkout."""
    root = Path(__file__).resolve().parents[2]  # the checkout, above mtrl/training
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def provenance(started_at: str | None = None) -> dict[str, Any]:
    """Code, libraries, command, host and start time of this process."""
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
        "plugins": plugins.loaded(),  # group -> name -> "distribution version (module:attr)"
        "started_at": started_at or now(),
        "ended_at": None,
    }


def protocol(
    config: Config, parameter_counts: dict[str, int], env: MultiTaskVecEnv | None = None
) -> dict[str, Any]:
    """How the run's numbers were made: what ``mtrl report`` checks before comparing runs. A
    user's env object (``env``, named ``custom:<class>``) says its own size and episode length."""
    metaworld = is_metaworld(config.env.name)
    custom = env is not None and envs.is_custom(config.env.name)
    return {
        "env": config.env.name,
        "tasks": env.num_tasks if custom else len(resolve_task_names(config.env.name)),
        "reward_version": config.env.reward_version if metaworld else None,
        "max_episode_steps": getattr(env, "max_episode_steps", None)
        if custom
        else episode_steps(config.env.name, config.env.max_episode_steps),
        "eval_episodes": config.eval_episodes,
        "final_eval_episodes": config.final_eval_episodes,
        "goal_scheme": GOAL_SCHEME,
        "steps_per_task": config.total_steps,
        "seed": config.seed,
        "actor_parameters": int(parameter_counts["actor"]),
        "critic_parameters": int(parameter_counts["critic"]),
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
        self.provenance = provenance(previous.get("provenance", {}).get("started_at"))
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


def configure_torch(config: Config) -> torch.device:
    """Threads, determinism and float handling for a training process; returns its device.

    Denormal floats are flushed to zero: tiny gradients and Adam moments turn denormal as a run
    goes on, and CPU arithmetic on them is slow enough to slow a run down (docs/benchmarks.md).
    """
    device = resolve_device(config.device)
    if config.torch_threads > 0:
        torch.set_num_threads(config.torch_threads)
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    if device.type == "cuda" and config.agent.precision != "fp32":
        torch.set_float32_matmul_precision("high")  # TF32 for what stays fp32 (the Gram matrices)
    torch.set_flush_denormal(True)
    return device


def share_cores(config: Config) -> CoreShare:
    """The run's place among the machine's training processes (call after ``configure_torch``):
    with ``torch_threads=0`` and not deterministic it takes its share of the cores as other runs
    start and end; otherwise it keeps its threads and warns where they oversubscribe."""
    return CoreShare(
        adapt=config.torch_threads == 0 and not config.deterministic,
        get_threads=torch.get_num_threads,
        set_threads=torch.set_num_threads,
    )


def default_run_dir(config: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = config.env.name.replace(":", "-").replace(",", "+")[:60]
    return Path("runs") / f"{name}-seed{config.seed}-{stamp}"


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


# The independent baseline's checkpoint: which of its model sets is complete, at which step.
INDEPENDENT_STATE = Path("checkpoints", "independent", "state.json")


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


def start_locked(run_dir: Path, resume: bool, setup: Callable[[], None]) -> RunLock:
    """Locks the run directory, then runs a trainer's ``setup``; the lock is released again if
    setup fails, and otherwise held until the trainer's ``close()``."""
    lock = prepare_run_dir(run_dir, resume)
    try:
        setup()
    except OSError as error:
        lock.release()
        where = error.filename or run_dir
        raise RunError(f"{where}: {error.strerror or error} (starting the run)") from error
    except BaseException:
        lock.release()
        raise
    return lock


# What a disk says when it cannot take a write (an OSError without a file name, from write(2)).
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)


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


def check_free_space(run_dir: Path, needed: int) -> None:
    """A full disk fails the run now, not at its first checkpoint hours later."""
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise RunError(
            f"{run_dir}: {free / 2**20:.0f} MiB free, but its checkpoints need about "
            f"{needed / 2**20:.0f} MiB (lower keep_checkpoints, or checkpoint_replay=false)"
        )


class RunOwner:
    """What a trainer does before anything else: check the config's names, then lock and prepare
    its run directory and run its ``_setup`` under the lock (released again if setup fails, else
    held until the trainer's ``close()``)."""

    def __init__(self, config: Config, run_dir: Path, resume: bool = False) -> None:
        check_updates(config)  # before the run directory is touched
        self._check_specs(config)
        self.lock = start_locked(run_dir, resume, lambda: self._setup(config, run_dir, resume))

    def _check_specs(self, config: Config) -> None:
        check_specs(config)

    def _setup(self, config: Config, run_dir: Path, resume: bool) -> None:
        raise NotImplementedError


def env_options(config: Config, vectorised: bool = True) -> dict[str, Any]:
    """``make_env``'s options as the config sets them; a training run's envs (and its periodic
    evaluations) also take its vectorisation."""
    options: dict[str, Any] = {
        "reward_version": config.env.reward_version,
        "max_episode_steps": config.env.max_episode_steps or None,
    }
    if vectorised:
        options |= {"vector": config.env.vector, "workers": config.env.workers}
    return options


def make_eval_env(
    config: Config,
    seed: int | None = None,
    tasks: list[str] | None = None,
    render: bool = False,
    vectorised: bool = False,
) -> MultiTaskVecEnv:
    """A run's evaluation env. Start states come from a stream training never sees (the run's
    seed + EVAL_SEED_OFFSET, unless ``seed``); Meta-World runs its training goals (``goal_seed``,
    its MT protocol) and may be cut to ``tasks``. A synthetic set always steps all its tasks
    (they are defined by their index among all). A fresh one per evaluation gives every
    evaluation the same start states, and a resumed run evaluates as an uninterrupted one."""
    seed = config.seed + EVAL_SEED_OFFSET if seed is None else seed
    options = env_options(config, vectorised) | ({"render": True} if render else {})
    if is_metaworld(config.env.name):
        return make_env(config.env.name, seed, goal_seed=config.seed, tasks=tasks, **options)
    return make_env(config.env.name, seed, **options)
