"""The "independent" baseline: one stable-baselines3 SAC per task, nothing shared.

The MTRL papers report it as the reference that multi-task learning should match with one network.
It writes the run-directory layout of every mtrl run (``config.yaml``, ``run.json``,
``metrics.jsonl`` with the same keys, ``eval/final.json``), so ``mtrl report`` treats it like any
other method. Each task trains on its own env (the task set's env restricted to that task, on the
same goals, one-hot included) with the run's hyper-parameters; the T models advance in lockstep,
``eval_every`` steps at a time, and are evaluated together on the run's evaluation env.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.callbacks import Callback
from mtrl.config import Config, to_dict
from mtrl.envs import is_metaworld, make_env
from mtrl.envs.base import MultiTaskVecEnv
from mtrl.errors import RunError
from mtrl.evaluation.protocol import TaskResult, evaluate, log_evaluation
from mtrl.training.logging import RunLogger
from mtrl.training.run import env_options, make_eval_env
from mtrl.training.session import INDEPENDENT_STATE, RunSession


class SingleTaskEnv(gym.Env):
    """Row ``row`` of a multi-task vector env as a gymnasium env (what stable-baselines3 takes).

    The other rows (synthetic sets step all tasks at once) get zero actions and are ignored.
    """

    def __init__(self, vec_env: MultiTaskVecEnv, row: int) -> None:
        self.vec_env, self.row = vec_env, row
        bound = np.full(vec_env.obs_dim, np.inf, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-bound, bound, dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (vec_env.action_dim,), dtype=np.float32)
        self._next_obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._next_obs is None:  # the vector env resets itself when an episode ends
            self._next_obs = self.vec_env.reset()[self.row]
        return self._next_obs.copy(), {}

    def step(self, action: np.ndarray):
        actions = np.zeros((self.vec_env.num_tasks, self.vec_env.action_dim), dtype=np.float32)
        actions[self.row] = action
        step = self.vec_env.step(actions)
        row = self.row
        self._next_obs = step.obs[row]
        info = {"success": bool(step.success[row])}
        return (
            step.next_obs[row].copy(),
            float(step.reward[row]),
            bool(step.terminated[row]),
            bool(step.truncated[row]),
            info,
        )


class IndependentTrainer:
    """Same surface as ``mtrl.training.trainer.Trainer``: ``train()``, ``close()``, ``step``, callbacks;
    its ``RunSession`` runs it as it runs the multi-task trainer."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        resume: bool = False,
        callbacks: Callback | list[Callback] | None = None,
    ) -> None:
        self.session = RunSession(config, run_dir, resume, callbacks)
        self.session.open(lambda: self._setup(config, run_dir, resume))

    def _setup(self, config: Config, run_dir: Path, resume: bool) -> None:
        from stable_baselines3 import SAC
        from stable_baselines3.common.vec_env import DummyVecEnv

        self.config, self.run_dir = config, run_dir
        self.device = self.session.device
        self._env_options = env_options(config, vectorised=False)
        probe = make_env(config.env.name, config.seed, **self._env_options)
        self.task_names = list(probe.task_names)
        probe.close()
        state_path = run_dir / INDEPENDENT_STATE
        self.models_dir = state_path.parent
        self.step, saved = 0, None
        if resume:
            if not state_path.is_file():
                raise RunError(f"{run_dir}: no independent-baseline checkpoint to resume from")
            state = json.loads(state_path.read_text())
            self.step, saved = int(state["step"]), self.models_dir / state["models"]
        agent = config.agent
        self.envs, self.models = [], []
        for index, name in enumerate(self.task_names):
            vec_env = self._task_env(index, name)
            env = DummyVecEnv([lambda vec_env=vec_env, index=index: self._wrap(vec_env, index)])
            self.envs.append(env)
            path = saved / f"{index:03d}.zip" if saved else None
            if path is not None:
                model = SAC.load(path, env=env, device=self.device)
            else:
                model = SAC(
                    "MlpPolicy",
                    env,
                    learning_rate=agent.critic_lr,
                    buffer_size=config.replay_capacity_per_task,
                    learning_starts=config.warmup_steps,
                    batch_size=agent.batch_size_per_task,
                    tau=agent.tau,
                    gamma=agent.gamma,
                    train_freq=1,
                    gradient_steps=max(1, round(config.updates_per_step)),
                    ent_coef=f"auto_{agent.init_temperature}",
                    target_entropy=agent.target_entropy or -float(env.action_space.shape[0]),
                    policy_kwargs={"net_arch": list(agent.hidden_sizes)},
                    seed=config.seed * 1000 + index,
                    device=self.device,
                    verbose=0,
                )
            self.models.append(model)
        self.last_eval: dict[str, TaskResult] | None = None
        self.session.start(
            self.step, self.task_names, self.parameter_counts(), algorithm="independent"
        )

    def _task_env(self, index: int, name: str) -> MultiTaskVecEnv:
        if is_metaworld(self.config.env.name):  # just this task, on the run's goals
            return make_env(
                self.config.env.name,
                self.config.seed * 1000 + index,
                goal_seed=self.config.seed,
                tasks=[name],
                **self._env_options,
            )
        return make_env(self.config.env.name, self.config.seed * 1000 + index, **self._env_options)

    def _wrap(self, vec_env: MultiTaskVecEnv, index: int) -> gym.Env:
        row = 0 if vec_env.num_tasks == 1 else index
        return SingleTaskEnv(vec_env, row)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs [N, obs] with the full one-hot -> each row's action from its own task's model."""
        task = obs[:, -len(self.task_names) :].argmax(1)
        actions = np.zeros((len(obs), self.envs[0].action_space.shape[0]), dtype=np.float32)
        for index in np.unique(task):
            rows = task == index
            actions[rows], _ = self.models[index].predict(obs[rows], deterministic=True)
        return actions

    def _evaluate(self, logger: RunLogger, episodes: int, final: bool) -> dict[str, TaskResult]:
        env = make_eval_env(self.config)
        try:
            results = evaluate(self.act, env, episodes)
        finally:
            env.close()
        self.last_eval = results
        log_evaluation(logger, self.step, results, self.run_dir, final)
        self.session.evaluated(self.step, results, final)
        return results

    def _checkpoint(self) -> Path:
        """All T models into a fresh ``step_<N>/`` directory, then ``state.json`` points at it:
        a kill at any moment leaves the previous complete set to resume from."""
        directory = self.models_dir / f"step_{self.step:010d}"
        directory.mkdir(parents=True, exist_ok=True)
        for index, model in enumerate(self.models):
            path = directory / f"{index:03d}.zip"
            try:
                model.save(path)
            except OSError as error:  # name the file: write(2) errors carry none
                raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        state = self.run_dir / INDEPENDENT_STATE
        temporary = state.with_suffix(".tmp")
        record = {
            "step": self.step,
            "models": directory.name,
            "task_names": self.task_names,
            "config": to_dict(self.config),  # what a resume compares config.yaml with
        }
        temporary.write_text(json.dumps(record | self.session.record()))
        temporary.replace(state)
        for old in self.models_dir.glob("step_*"):
            if old != directory:
                shutil.rmtree(old, ignore_errors=True)
        self.session.write_status("running", self.step)  # run.json's step follows checkpoints
        self.session.callbacks.fire("on_checkpoint", self.step, directory)
        return directory

    def last_checkpoint(self) -> Path | None:
        try:
            state = json.loads((self.run_dir / INDEPENDENT_STATE).read_text())
            return self.models_dir / state["models"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def train(self) -> dict[str, TaskResult] | None:
        """As ``Trainer.train`` (``RunSession.run``)."""
        return self.session.run(self)

    def loop(self, logger: RunLogger) -> str | None:
        """All T models ``eval_every`` steps at a time (else ``checkpoint_every``), each chunk
        logged, evaluated and checkpointed; returns what asked it to stop."""
        config = self.config
        cores = self.session.cores
        chunk = config.eval_every or config.checkpoint_every or config.total_steps
        while self.step < config.total_steps:
            steps = min(chunk, config.total_steps - self.step)
            if cores is not None and (shared := cores.check()):
                logger.message(shared)
            start = time.perf_counter()
            for model in self.models:
                model.learn(steps, reset_num_timesteps=False, progress_bar=False)
            seconds = time.perf_counter() - start
            self.step += steps
            logger.advance(steps)
            scalars = {"charts/env_steps_per_s": steps * len(self.models) / seconds}
            logger.log(self.step, scalars)
            self.session.callbacks.fire("on_log", self.step, scalars)
            if config.eval_every and self.step % config.eval_every == 0:
                self._evaluate(logger, config.eval_episodes, final=False)
            self._checkpoint()
            if stopper := self.session.stop_requested():
                return stopper
        return None

    def final_evaluation(self, logger: RunLogger) -> dict[str, TaskResult]:
        return self._evaluate(logger, self.config.final_eval_episodes, final=True)

    def parameter_counts(self) -> dict[str, Any]:
        policy = self.models[0].policy
        actor = sum(p.numel() for p in policy.actor.parameters())
        critic = sum(p.numel() for p in policy.critic.parameters())
        return {"actor": actor * len(self.models), "critic": critic * len(self.models)}

    def close(self) -> None:
        """Closes the envs, then the session (the W&B run, the run directory's lock)."""
        with self.session:
            for env in self.envs:
                env.close()
