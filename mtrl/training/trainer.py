"""The training loop: collect -> replay -> update -> log -> evaluate -> checkpoint.

A run directory holds ``config.yaml`` (resolved), ``run.json`` (tasks, parameter counts, status),
``metrics.jsonl``, ``tensorboard/``, ``checkpoints/`` and ``eval/``. Everything that decides what
happens next (networks, optimisers, temperatures, counters, every RNG, optionally the replay and the
env) goes into each checkpoint, so ``--resume`` continues the same run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrl.agents.networks.care import checkpoint_vectors, context_files
from mtrl.agents.sac import MultiTaskSAC
from mtrl.callbacks import Callback
from mtrl.config import Config, _get, from_dict, to_dict
from mtrl.envs import CUSTOM, is_custom, make_env
from mtrl.envs.base import MultiTaskVecEnv
from mtrl.errors import CheckpointError, EnvError, RunError, RunFinishedError, UsageError
from mtrl.evaluation.protocol import (
    EVAL_SEED_OFFSET,
    TaskResult,
    evaluate,
    log_evaluation,
    mean_success,
)
from mtrl.evaluation.video import FPS, SampledFrames, gif_bytes
from mtrl.training.checkpoint import (
    CheckpointKeeper,
    TrainingCheckpoint,
    finite_agent_state,
    latest_checkpoint,
    load_checkpoint,
    load_state,
    step_checkpoints,
)
from mtrl.training.logging import RunLogger
from mtrl.training.replay import TaskReplay
from mtrl.training.run import check_specs, env_options, make_eval_env
from mtrl.training.session import INDEPENDENT_STATE, RunSession

TIME_PARTS = ("env", "inference", "replay", "update")  # the loop's timed parts


EnvSource = MultiTaskVecEnv | Callable[[int], MultiTaskVecEnv]  # an env, or seed -> env


class Trainer:
    """Multi-task SAC's loop over one run directory, inside its ``RunSession``: ``train()``, then
    ``close()``.

    ``env``: a user's env object (any ``MultiTaskVecEnv``, e.g. ``mtrl.envs.GymnasiumTasks``) or
    a factory ``seed -> env``, instead of the config's ``env.name`` (which becomes
    ``custom:<class>``). Evaluations need an env of their own: ``eval_env`` (an env, reset by each
    evaluation, or a factory called with the evaluation seed), or by default the factory's.
    ``callbacks``: ``mtrl.Callback`` objects (``mtrl.callbacks``). ``checkpoint``: what
    ``resume_point`` read for a resume, taken as it is where it is still the run's latest
    checkpoint once the run directory is locked (else it is read again).
    """

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        resume: bool = False,
        env: EnvSource | None = None,
        eval_env: EnvSource | None = None,
        callbacks: Callback | list[Callback] | None = None,
        checkpoint: ResumePoint | None = None,
    ) -> None:
        self._env_source, self._eval_source = env, eval_env
        num_tasks = None
        if env is not None:
            if eval_env is None and not callable(env):
                raise UsageError(
                    "evaluations need an env of their own: pass eval_env= (an env or a factory "
                    "seed -> env), or env as a factory"
                )
            self.env = self._build_env(env, config.seed)
            num_tasks = self.env.num_tasks
            if not is_custom(config.env.name):
                name = f"{CUSTOM}{type(self.env).__name__}"
                config = dataclasses.replace(config, env=dataclasses.replace(config.env, name=name))
        # A resume's CARE bodies take their context vectors from the checkpoint, not the file.
        with _resumed_vectors(run_dir, config, checkpoint) if resume else contextlib.nullcontext():
            self.session = RunSession(config, run_dir, resume, callbacks, num_tasks)
            self.session.open(lambda: self._setup(config, run_dir, resume, checkpoint))

    def _build_env(self, source: EnvSource, seed: int) -> MultiTaskVecEnv:
        env = source(seed) if callable(source) else source
        for name in ("task_names", "obs_dim", "action_dim", "num_goals", "step", "reset"):
            if not hasattr(env, name):
                raise UsageError(f"env {env!r} is not a MultiTaskVecEnv: it has no {name}")
        return env

    def _setup(
        self, config: Config, run_dir: Path, resume: bool, point: ResumePoint | None
    ) -> None:
        checkpoint = None
        if resume:  # before networks are built to a config that the checkpoint does not fit
            path = latest_checkpoint(run_dir)
            payload = point.payload if point is not None and point.is_current(path) else None
            if payload is None:
                payload = load_checkpoint(path)
            checkpoint = TrainingCheckpoint.from_payload(path, payload, resume=True)
            check_resume(config, run_dir, "the config", path, checkpoint.step, checkpoint.config)
        self.config, self.run_dir = config, run_dir
        self.device = self.session.device
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)  # warm-up actions

        if self._env_source is None:
            self.env: MultiTaskVecEnv = make_env(
                config.env.name, config.seed, **env_options(config)
            )
        self.task_names = list(self.env.task_names)
        num_tasks = self.env.num_tasks
        self.agent = MultiTaskSAC(
            self.env.obs_dim,
            self.env.action_dim,
            num_tasks,
            config.agent,
            self.device,
            seed=config.seed,
        )
        self.agent.bind_task_names(self.task_names)
        self.replay = TaskReplay(
            num_tasks,
            self.env.obs_dim,
            self.env.action_dim,
            config.replay_capacity_per_task,
            seed=config.seed,
        )
        self.keeper = CheckpointKeeper(run_dir, config.keep_checkpoints)
        self.session.check_free_space(self._checkpoint_bytes() * (config.keep_checkpoints + 2))
        self.step = 0
        self.update_credit = 0.0
        self.obs = self.env.reset()  # [T, obs_dim]
        self.episode_return = np.zeros(num_tasks)
        self.episode_success = np.zeros(num_tasks, dtype=bool)
        self.last_return = np.full(num_tasks, np.nan)
        self.last_success = np.full(num_tasks, np.nan)
        self.last_eval: dict[str, TaskResult] | None = None
        if checkpoint is not None:
            if not finite_agent_state(checkpoint.agent):  # it would only write more like it
                raise RunError(
                    f"{path}: its networks are not finite, a resume would keep them so; "
                    f"{self._last_good_checkpoint()} (move the newer ones aside to resume from it)"
                )
            self._restore(path, checkpoint)
        self.session.start(
            self.step,
            self.task_names,
            self.agent.parameter_counts(),
            env=self.env,
            precision=self.agent.precision,  # agent.precision=auto resolved on this machine
        )

    @property
    def updates(self) -> int:
        return self.agent.updates

    # ------------------------------------------------------------------------------------ loop
    def train(self) -> dict[str, TaskResult] | None:
        """Runs to ``total_steps`` and returns the final evaluation; None if a signal or a callback
        stopped it first (``RunSession.run``: how a stop and a failure end the run)."""
        return self.session.run(self)

    def loop(self, logger: RunLogger) -> str | None:
        """Collect, update, log, evaluate, checkpoint, step by step to ``total_steps``; returns
        what asked it to stop at a step boundary, after writing a checkpoint there."""
        config = self.config
        cores = self.session.cores
        timers = dict.fromkeys(TIME_PARTS, 0.0)
        window_start, window_steps, window_updates = time.perf_counter(), 0, self.updates
        metrics: dict[str, torch.Tensor] = {}
        while self.step < config.total_steps:
            if cores is not None and (shared := cores.check()):
                logger.message(shared)
            self._collect(timers)
            resets = self.agent.resets
            metrics.update(self._update(timers) or {})  # diagnostics persist
            if self.agent.resets != resets:
                logger.log(self.step + 1, self._reset_event(), kind="event")
                logger.message(f"reset {self.agent.resets} at update {self.agent.reset_at}")
            self.step += 1
            window_steps += 1
            logger.advance(1)

            if self.step % config.log_every == 0 or self.step == config.total_steps:
                elapsed = time.perf_counter() - window_start
                scalars = self._train_scalars(metrics, elapsed, window_steps, timers)
                scalars["charts/updates_per_s"] = (self.updates - window_updates) / elapsed
                logger.log(self.step, scalars)
                logger.advance(0, self._postfix(scalars))
                self.session.callbacks.fire("on_log", self.step, scalars)
                window_start, window_steps = time.perf_counter(), 0
                window_updates = self.updates
                timers = dict.fromkeys(TIME_PARTS, 0.0)
            if config.eval_every and self.step % config.eval_every == 0:
                if not self._final_evaluation_follows():
                    self._evaluate(logger, config.eval_episodes)
            if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                self._checkpoint()
            if stopper := self.session.stop_requested():
                self._checkpoint()
                return stopper
        if not (config.checkpoint_every and self.step % config.checkpoint_every == 0):
            self._checkpoint()
        return None

    def final_evaluation(self, logger: RunLogger) -> dict[str, TaskResult]:
        results = self._evaluate(logger, self.config.final_eval_episodes, final=True)
        self._checkpoint()  # again, so that best.pt is judged by the final evaluation too
        return results

    def last_checkpoint(self) -> Path | None:
        written = step_checkpoints(self.run_dir)
        return written[-1] if written else None

    def _collect(self, timers: dict[str, float]) -> None:
        start = time.perf_counter()
        if self.step < self.config.warmup_steps:
            action = self.rng.uniform(-1.0, 1.0, (self.env.num_tasks, self.env.action_dim))
        else:
            action = self.agent.act(self.obs)
        acted = time.perf_counter()
        step = self.env.step(action)
        stepped = time.perf_counter()
        self.replay.add(self.obs, action, step.reward, step.next_obs, step.terminated)
        self.agent.observe_step(self.obs, action, step.reward, step.terminated, step.truncated)
        timers["inference"] += acted - start
        timers["env"] += stepped - acted
        timers["replay"] += time.perf_counter() - stepped
        self.episode_return += step.reward
        self.episode_success |= step.success
        done = step.terminated | step.truncated
        if done.any():
            self.last_return[done] = self.episode_return[done]
            self.last_success[done] = self.episode_success[done]
            self.agent.observe_success(np.flatnonzero(done), self.episode_success[done])
            self.episode_return[done], self.episode_success[done] = 0.0, False
        self.obs = step.obs

    def _update(self, timers: dict[str, float]) -> dict[str, torch.Tensor] | None:
        batch_size = self.config.agent.batch_size_per_task
        if self.step < self.config.warmup_steps or len(self.replay) < batch_size:
            return None
        self.update_credit += self.config.updates_per_step
        metrics = None
        while self.update_credit >= 1.0:
            self.update_credit -= 1.0
            start = time.perf_counter()
            batch = self.replay.sample(batch_size, self.device)
            sampled = time.perf_counter()
            resets = self.agent.resets
            metrics = self.agent.update(batch)
            if self.agent.resets != resets:  # fresh networks learn from the kept replay first
                for _ in range(self.config.agent.reset_warmup):
                    metrics = self.agent.update(self.replay.sample(batch_size, self.device))
            timers["replay"] += sampled - start
            timers["update"] += time.perf_counter() - sampled
            if self.agent.consecutive_skipped >= self.config.max_nonfinite_updates:
                reason = (
                    f"{self.agent.consecutive_skipped} updates in a row had non-finite losses or "
                    f"gradients (step {self.step})"
                )
                self.session.mark_failed(reason, self.step)
                raise RunError(f"{reason}; stopped, {self._last_good_checkpoint()}")
        return metrics

    def _last_good_checkpoint(self) -> str:
        """Names the newest periodic checkpoint with finite networks, the one to go back to after
        a stop for non-finite values (a newer one may hold what made them non-finite)."""
        written = step_checkpoints(self.run_dir)
        for path in reversed(written):
            with contextlib.suppress(CheckpointError):
                payload = load_checkpoint(path)
                if "agent" in payload and finite_agent_state(payload["agent"]):
                    return f"last good checkpoint: {path}"
        return "no checkpoint has finite networks" if written else "no checkpoint was written"

    # -------------------------------------------------------------------------------- logging
    def _reset_event(self) -> dict[str, float]:
        return {
            "events/reset": float(self.agent.resets),
            "charts/updates": float(self.agent.reset_at),
            "charts/env_steps": float((self.step + 1) * self.env.num_tasks),
        }

    def _train_scalars(
        self, metrics: dict[str, torch.Tensor], elapsed: float, steps: int, timers: dict
    ) -> dict[str, float]:
        num_tasks = self.env.num_tasks
        scalars: dict[str, float] = {
            "charts/env_steps": float(self.step * num_tasks),
            "charts/updates": float(self.updates),
            "charts/nonfinite_updates": float(self.agent.skipped_updates),
            "charts/env_steps_per_s": steps * num_tasks / max(elapsed, 1e-9),
        }
        if self.agent.has_running_statistics:
            scalars["charts/nonfinite_inputs"] = float(self.agent.nonfinite_inputs)
        # Where the wall-clock went (fractions of the window; "other" is logging, bookkeeping).
        for part, seconds in timers.items():
            scalars[f"charts/time_{part}_fraction"] = seconds / max(elapsed, 1e-9)
        scalars["charts/time_other_fraction"] = max(0.0, 1.0 - sum(timers.values()) / elapsed)
        if not np.all(np.isnan(self.last_success)):
            scalars["charts/train_success_rate"] = float(np.nanmean(self.last_success))
            scalars["charts/train_return"] = float(np.nanmean(self.last_return))
        for key, value in metrics.items():
            if value.dim() == 0:
                scalars[key] = float(value)
        for key, value in metrics.items():
            if key.startswith("per_task/") and value.dim() == 1:
                stem = key.removeprefix("per_task/")
                for name, item in zip(self.task_names, value.tolist(), strict=True):
                    scalars[f"tasks/{name}/{stem}"] = item
            elif key.startswith("per_pair/") and value.dim() == 2:  # [T, T], symmetric
                stem, rows = key.removeprefix("per_pair/"), value.tolist()
                for i, first in enumerate(self.task_names):
                    for j in range(i + 1, len(self.task_names)):
                        scalars[f"pairs/{first}/{self.task_names[j]}/{stem}"] = rows[i][j]
        return scalars

    def _postfix(self, scalars: dict[str, float]) -> dict[str, str]:
        postfix = {"env_steps/s": f"{scalars['charts/env_steps_per_s']:.0f}"}
        if self.last_eval is not None:
            postfix["eval_success"] = f"{mean_success(self.last_eval):.2f}"
        elif "charts/train_success_rate" in scalars:
            postfix["train_success"] = f"{scalars['charts/train_success_rate']:.2f}"
        return postfix

    # ----------------------------------------------------------------------------- evaluation
    def _final_evaluation_follows(self) -> bool:
        """At the last step a periodic evaluation would repeat the final one that comes next
        (with at least as many episodes): it is skipped, which at 50 episodes a task saves a
        quarter-million MT10 steps a run."""
        config = self.config
        return (
            self.step >= config.total_steps and config.final_eval_episodes >= config.eval_episodes
        )

    def _evaluate(
        self, logger: RunLogger, episodes: int, final: bool = False
    ) -> dict[str, TaskResult]:
        def policy(obs):
            return self.agent.act(obs, deterministic=True)

        every = self.config.eval_video_every
        frames = None
        if every and (final or self.step % every == 0):
            frames = {task: SampledFrames() for task in range(len(self.task_names))}
        if self._env_source is None:  # one process when recording: the frames come from here
            vectorised, render = frames is None, frames is not None
            with make_eval_env(self.config, vectorised=vectorised, render=render) as env:
                results = evaluate(policy, env, episodes, frames)
        else:
            source = self._eval_source if self._eval_source is not None else self._env_source
            env = self._build_env(source, self.config.seed + EVAL_SEED_OFFSET)
            try:
                frames = frames if frames is None or _renders(env, logger) else None
                results = evaluate(policy, env, episodes, frames)
            finally:
                if callable(source):  # a fresh one per evaluation; a given one stays open
                    env.close()
        self.last_eval = results
        log_evaluation(logger, self.step, results, self.run_dir, final)
        if frames:
            self._write_videos(logger, frames)
        self.session.evaluated(self.step, results, final)
        return results

    # --------------------------------------------------------------------------- checkpoints
    def _checkpoint(self) -> Path:
        env_state = getattr(self.env, "state_dict", None)
        checkpoint = TrainingCheckpoint(
            config=to_dict(self.config),
            task_names=self.task_names,
            obs_dim=self.env.obs_dim,
            action_dim=self.env.action_dim,
            step=self.step,
            agent=self.agent.state_dict(),
            updates=self.updates,
            update_credit=self.update_credit,
            rng={
                "torch": torch.get_rng_state(),
                "numpy": self.rng.bit_generator.state,
                "replay": self.replay.generator.get_state(),
            },
            best_success=self.keeper.best_success,
            run=self.session.record(),  # provenance and protocol
            episodes={  # numpy arrays would need unpickling code: stored as tensors
                "return": torch.as_tensor(self.episode_return),
                "success": torch.as_tensor(self.episode_success),
                "last_return": torch.as_tensor(self.last_return),
                "last_success": torch.as_tensor(self.last_success),
            },
            replay=self.replay.state_dict() if self.config.checkpoint_replay else None,
            env=None
            if env_state is None
            else {"state": env_state(), "obs": torch.as_tensor(self.obs)},
        )
        score = mean_success(self.last_eval) if self.last_eval is not None else None
        path = self.keeper.save(self.step, checkpoint.to_payload(), score)
        self.session.write_status("running", self.step)  # run.json's step follows checkpoints
        self.session.callbacks.fire("on_checkpoint", self.step, path)
        return path

    def _checkpoint_bytes(self) -> int:
        """An estimate of one checkpoint: networks, targets, Adam moments, optionally the replay."""
        counts = self.agent.parameter_counts()
        network_bytes = 4 * (3 * counts["actor"] + 4 * counts["critic"])
        replay_bytes = self.replay.nbytes() if self.config.checkpoint_replay else 0
        return network_bytes + replay_bytes

    def _restore(self, path: Path, checkpoint: TrainingCheckpoint) -> None:
        if checkpoint.task_names != self.task_names:
            raise RunError("checkpoint tasks differ from the config's tasks; cannot resume")
        load_state(path, self.agent, checkpoint.agent)
        self.step = checkpoint.step  # the update counter is restored with the agent
        self.update_credit = float(checkpoint.update_credit)
        torch.set_rng_state(checkpoint.rng["torch"])
        self.rng.bit_generator.state = checkpoint.rng["numpy"]
        if checkpoint.replay is not None:
            load_state(path, self.replay, checkpoint.replay, "replay state")
        else:
            self.replay.generator.set_state(checkpoint.rng["replay"])
        self.keeper.best_success = float(checkpoint.best_success)
        load_env_state = getattr(self.env, "load_state_dict", None)
        episodes = checkpoint.episodes
        if checkpoint.env is not None and load_env_state is not None:
            load_env_state(checkpoint.env["state"])
            self.obs = checkpoint.env["obs"].numpy().astype(np.float32)
            self.episode_return = episodes["return"].numpy().astype(np.float64)
            self.episode_success = episodes["success"].numpy().astype(bool)
        self.last_return = episodes["last_return"].numpy().astype(np.float64)
        self.last_success = episodes["last_success"].numpy().astype(np.float64)

    def _write_videos(self, logger: RunLogger, frames: dict[int, list[np.ndarray]]) -> None:
        """Each task's first evaluation episode: eval/videos/step_<N>/<task>.gif, TensorBoard's
        images (``videos/<task>``) and W&B."""
        folder = self.run_dir / "eval" / "videos" / f"step_{self.step:010d}"
        folder.mkdir(parents=True, exist_ok=True)
        fps = FPS / 2  # SampledFrames keeps every second frame: real time over two
        for index, task_frames in frames.items():
            if not task_frames:
                continue
            task = self.task_names[index]
            gif = gif_bytes(task_frames, fps)
            path = folder / f"{task}.gif"
            path.write_bytes(gif)
            height, width = task_frames[0].shape[:2]
            logger.animation(f"videos/{task}", gif, height, width, self.step)
            if self.session.tracker is not None:
                self.session.tracker.video(self.step, task, path)

    def close(self) -> None:
        """Closes the envs, then the session (the W&B run, the run directory's lock)."""
        with self.session:
            self.env.close()
            if self._eval_source is not None and not callable(self._eval_source):
                self._eval_source.close()


def _renders(env: MultiTaskVecEnv, logger: RunLogger) -> bool:
    """Whether a user's evaluation env can give frames for eval_video_every (else said once)."""
    try:
        env.render(0)
    except (EnvError, NotImplementedError, AttributeError) as error:
        logger.message(f"eval_video_every: no videos, the evaluation env does not render ({error})")
        return False
    return True


def _read_run_config(run_dir: Path) -> dict[str, Any]:
    """config.yaml's keys as written (``load_yaml``: one line where it is not valid YAML)."""
    from mtrl.config import load_yaml

    path = run_dir / "config.yaml"
    if not path.exists():
        raise RunError(f"{run_dir} has no config.yaml; is it an mtrl run directory?")
    return load_yaml(path)


# What a resumed run may change: its length and its bookkeeping, never what the checkpoint holds.
RESUMABLE_KEYS = (
    "total_steps",
    "eval_every",
    "eval_episodes",
    "final_eval_episodes",
    "checkpoint_every",
    "keep_checkpoints",
    "checkpoint_replay",
    "log_every",
    "device",
    "torch_threads",
    "agent.compile",
    "agent.precision",
    "progress",
    "label",
    "eval_video_every",
    "wandb.project",
    "wandb.entity",
    "wandb.group",
    "wandb.mode",
)
# Where the run directory is, not what the run is: it may have moved since.
_LOCATION_KEYS = ("run_dir",)


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """What a resume continues from, read once: the latest checkpoint (a trainer's, or the
    independent baseline's ``state.json``), its step, the run's config it holds (None in an
    independent baseline's state written before it held one), what was read (the checkpoint's
    payload, or the state) and the file's identity when it was read (``is_current``)."""

    path: Path
    step: int
    config: dict[str, Any] | None
    payload: dict[str, Any]
    stamp: tuple[int, int, int] | None

    def is_current(self, path: Path) -> bool:
        """Whether ``path`` is still the file that was read (another writer may have replaced
        it before this one held the run directory's lock)."""
        return path == self.path and self.stamp is not None and _stamp(path) == self.stamp


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def resume_point(run_dir: Path) -> ResumePoint:
    """What a resume continues from (``ResumePoint``): the latest checkpoint, loaded."""
    found = step_checkpoints(run_dir)
    if found:
        path = found[-1]
        stamp = _stamp(path)  # before the read: a file replaced after it is read again
        payload = load_checkpoint(path)
        checkpoint = TrainingCheckpoint.from_payload(path, payload)
        return ResumePoint(path, checkpoint.step, checkpoint.config, payload, stamp)
    path = run_dir / INDEPENDENT_STATE
    if not path.is_file():
        latest_checkpoint(run_dir)  # "no checkpoint found under ..."
    try:
        stamp = _stamp(path)
        state = json.loads(path.read_text())
        return ResumePoint(path, int(state["step"]), state.get("config"), state, stamp)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunError(f"{path}: not a readable checkpoint ({error}); cannot resume") from None


def check_resume(
    config: Config,
    run_dir: Path,
    what: str,
    checkpoint: Path,
    step: int,
    fixed: dict[str, Any] | None,
) -> None:
    """Refuses, in one line and before anything is written, a resume that the checkpoint does not
    allow: ``config`` (``what``: where it came from) differing from the checkpoint's config
    ``fixed`` outside ``RESUMABLE_KEYS``, or a ``total_steps`` below the checkpoint's ``step``;
    a run that is finished at that step raises ``RunFinishedError`` (nothing to do)."""
    if fixed is not None:
        ours, theirs = to_dict(config), to_dict(from_dict(fixed))
        differ = [
            key
            for key in sorted(_flat_keys(ours))
            if key not in (*RESUMABLE_KEYS, *_LOCATION_KEYS)
            and _get(ours, key) != _get(theirs, key)
        ]
        if differ:
            raise RunError(
                f"{what} differs from the checkpoint {checkpoint} in {', '.join(differ)}, which "
                f"the checkpoint fixes: put back its values (a resume may change only "
                f"{', '.join(RESUMABLE_KEYS)})"
            )
    if config.total_steps < step:
        raise RunError(
            f"total_steps={config.total_steps} is below the step of the checkpoint {checkpoint} "
            f"({step}); a resume goes on from there: pass total_steps={step} or more"
        )
    if config.total_steps == step and _final_evaluation_step(run_dir) == step:
        raise RunFinishedError(
            f"{run_dir} finished at step {step} (eval/final.json); nothing to do (a larger "
            f"total_steps extends it: mtrl train --resume {run_dir} total_steps=N)"
        )


def _final_evaluation_step(run_dir: Path) -> int | None:
    """The step eval/final.json was written at; None where there is none (or it is unreadable)."""
    try:
        return int(json.loads((run_dir / "eval" / "final.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _resumed_vectors(
    run_dir: Path, config: Config, point: ResumePoint | None = None
) -> contextlib.AbstractContextManager:
    """A resume's CARE context vectors come from its checkpoint (``checkpoint_vectors``): the
    one ``point`` read where it is still current, else the latest checkpoint."""
    if not context_files(config.agent):
        return contextlib.nullcontext()
    path = latest_checkpoint(run_dir)
    payload = point.payload if point is not None and point.is_current(path) else None
    checkpoint = TrainingCheckpoint.from_payload(
        path, payload if payload is not None else load_checkpoint(path), resume=True
    )
    return checkpoint_vectors(config.agent, checkpoint.agent, checkpoint.task_names, resume=True)


def resume_config(
    run_dir: Path, overrides: list[str] | None = None, num_tasks: int | None = None
) -> Config:
    """The config a resume goes on with: config.yaml with the overrides a resume may make (its
    length, its logging), checked against the latest checkpoint's config, which is the run's
    truth (``check_resume``; a config.yaml that lacks keys the checkpoint has is refused as
    truncated). Nothing is written. ``num_tasks``: the run is on a user's env object of that
    many tasks."""
    return resume_config_and_point(run_dir, overrides, num_tasks)[0]


def resume_config_and_point(
    run_dir: Path, overrides: list[str] | None = None, num_tasks: int | None = None
) -> tuple[Config, ResumePoint]:
    """``resume_config`` and the checkpoint it was checked against, which a trainer takes as it
    is (``Trainer(checkpoint=...)``): a resume reads its checkpoint once."""
    from mtrl.config import apply_overrides, parse_overrides, validate

    saved = _read_run_config(run_dir)
    point = resume_point(run_dir)
    checkpoint, step, fixed = point.path, point.step, point.config
    if fixed is not None:
        missing = sorted(set(_flat_keys(fixed)) - set(_flat_keys(saved)))
        if missing:
            shown = ", ".join(missing[:3]) + (
                f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            )
            raise RunError(
                f"{run_dir / 'config.yaml'} is truncated: it lacks {shown}, which the checkpoint "
                f"{checkpoint} holds; restore it (nothing was changed)"
            )
    config = from_dict(saved)
    if overrides:
        frozen = sorted(
            key for key in _flat_keys(parse_overrides(overrides)) if key not in RESUMABLE_KEYS
        )
        if frozen:
            raise RunError(
                f"cannot change {', '.join(frozen)} when resuming (the checkpoint fixes it); "
                f"a resume may change: {', '.join(RESUMABLE_KEYS)}"
            )
        config = apply_overrides(config, overrides)
    config = validate(config)
    with _resumed_vectors(run_dir, config, point):
        config = check_specs(config, num_tasks)
    check_resume(config, run_dir, str(run_dir / "config.yaml"), checkpoint, step, fixed)
    return config, point


def _flat_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict):
            keys.extend(_flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys
