"""The Python API as a user's script drives it: train, load_policy, predict, evaluate, callbacks,
resume, and the user's own env objects (a MultiTaskVecEnv, a gymnasium vector env)."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium
import numpy as np
import pytest
import torch

import mtrl
from mtrl.envs import GymnasiumTasks, SyntheticVecEnv
from mtrl.errors import UsageError

TINY = {
    "total_steps": 400,
    "warmup_steps": 100,
    "eval_every": 200,
    "eval_episodes": 2,
    "final_eval_episodes": 2,
    "checkpoint_every": 200,
    "log_every": 100,
    "progress": False,
    "torch_threads": 1,
    "agent": {"hidden_sizes": [32, 32], "compile": False, "diagnostics_every": 0},
}


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    seen: dict[str, list] = {"log": [], "eval": [], "checkpoint": []}
    callback = mtrl.Callback(
        on_log=lambda step, scalars: seen["log"].append((step, scalars["charts/env_steps"])),
        on_eval=lambda step, results, final: seen["eval"].append((step, final, len(results))),
        on_checkpoint=lambda step, path: seen["checkpoint"].append((step, path.name)),
    )
    run_dir = tmp_path_factory.mktemp("api") / "run"
    result = mtrl.train("synthetic", run_dir=run_dir, callbacks=callback, seed=1, **TINY)
    return result, seen


def test_train_returns_the_run_and_calls_every_hook(synthetic_run):
    result, seen = synthetic_run
    assert result.finished and result.step == 400 and result.checkpoint.is_file()
    final = json.loads((result.run_dir / "eval" / "final.json").read_text())["tasks"]
    assert {t: r.success_rate for t, r in result.results.items()} == {
        t: r["success_rate"] for t, r in final.items()
    }
    assert result.mean_success == pytest.approx(
        np.mean([r["success_rate"] for r in final.values()])
    )
    assert [step for step, _ in seen["log"]] == [100, 200, 300, 400]
    assert seen["log"][-1][1] == 400 * 4  # env steps over the 4 tasks
    assert seen["eval"] == [(200, False, 4), (400, True, 4)]  # the final one replaces the last
    assert [step for step, _ in seen["checkpoint"]][:2] == [200, 400]
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "finished"


def test_load_policy_and_predict_one_observation_a_batch_and_one_hot_rows(synthetic_run):
    result, _ = synthetic_run
    from_dir = mtrl.load_policy(result.run_dir)
    from_file = mtrl.load_policy(result.checkpoint, device="cpu")
    assert from_dir.task_names == ["point-0", "point-1", "point-2", "point-3"]
    assert (from_dir.state_dim, from_dir.action_dim, from_dir.num_tasks) == (2, 2, 4)
    states = np.random.default_rng(0).uniform(-1, 1, (5, 2)).astype(np.float32)
    batch = from_dir.predict(states, task="point-2")
    assert batch.shape == (5, 2) and np.all(np.abs(batch) <= 1)
    np.testing.assert_array_equal(from_file.predict(states, task=2), batch)  # index = name
    single = from_dir.predict(states[0], task="point-2")
    assert single.shape == (2,)
    np.testing.assert_allclose(single, batch[0], atol=1e-6)
    # Rows that carry the one-hot may mix tasks; each row acts as its own task.
    one_hot = np.eye(4, dtype=np.float32)[[2, 0, 2, 3, 1]]
    mixed = from_dir.predict(np.concatenate([states, one_hot], 1))
    np.testing.assert_allclose(mixed[[0, 2]], batch[[0, 2]], atol=1e-6)
    np.testing.assert_allclose(mixed[1], from_dir.predict(states[1], task=0), atol=1e-6)
    # The same actions as the trained agent's deterministic act on the env's observations.
    agent_obs = np.concatenate([states[:4], np.eye(4, dtype=np.float32)], 1)
    torch.manual_seed(0)
    sampled = from_dir.predict(agent_obs, deterministic=False)
    assert sampled.shape == (4, 2) and not np.allclose(sampled, from_dir.predict(agent_obs))


@pytest.mark.parametrize(
    "obs, task, message",
    [
        (np.zeros(2), "reach-v3", "not trained on 'reach-v3'"),
        (np.zeros(2), 7, "out of range"),
        (np.zeros(6), "point-0", "the state alone: 2 features, got 6"),
        (np.zeros(3), None, "pass task= for a state of 2"),
        (np.zeros((2, 2, 2)), "point-0", "must be"),
    ],
)
def test_predict_refuses_what_it_cannot_read_in_one_line(synthetic_run, obs, task, message):
    policy = mtrl.load_policy(synthetic_run[0].run_dir)
    with pytest.raises(UsageError, match=message):
        policy.predict(obs, task=task)


def test_evaluate_is_mtrl_eval_without_the_printing(synthetic_run, tmp_path):
    result, _ = synthetic_run
    ours = mtrl.evaluate(result.run_dir, tasks=["point-1", "point-3"], episodes=3)
    assert list(ours) == ["point-1", "point-3"] and ours["point-1"].episodes == 3
    out = tmp_path / "eval.json"
    subprocess.run(
        [sys.executable, "-m", "mtrl", "eval", str(result.checkpoint), "--task", "point-1",
         "--task", "point-3", "--episodes", "3", "--out", str(out)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    theirs = json.loads(out.read_text())["tasks"]
    for task, task_result in ours.items():
        assert task_result.success_rate == theirs[task]["success_rate"]
        assert task_result.mean_return == pytest.approx(theirs[task]["mean_return"])


def test_a_callback_that_returns_false_stops_the_run_and_resume_finishes_it(tmp_path):
    run_dir = tmp_path / "stopped"
    stop = mtrl.Callback(on_eval=lambda step, results, final: False)
    stopped = mtrl.train("synthetic", run_dir=run_dir, callbacks=stop, **TINY)
    assert not stopped.finished and stopped.step == 200 and stopped.results is None
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and "callback Callback.on_eval" in info["reason"]
    resumed = mtrl.train(resume=run_dir, total_steps=400)
    assert resumed.finished and resumed.step == 400
    with pytest.raises(TypeError, match="unknown callback hook on_step"):
        mtrl.Callback(on_step=print)


def test_a_users_env_object_and_factory_train_and_are_named_custom(tmp_path):
    train_env = SyntheticVecEnv(3, seed=5)
    made: list[int] = []

    def eval_factory(seed: int) -> SyntheticVecEnv:
        made.append(seed)
        return SyntheticVecEnv(3, seed=seed)

    run = mtrl.train(env=train_env, eval_env=eval_factory, run_dir=tmp_path / "own", **TINY)
    assert run.finished and list(run.results) == ["point-0", "point-1", "point-2"]
    info = json.loads((run.run_dir / "run.json").read_text())
    assert info["protocol"]["env"] == "custom:SyntheticVecEnv"
    assert info["protocol"]["tasks"] == 3 and info["protocol"]["max_episode_steps"] == 50
    assert len(made) == 2 and len(set(made)) == 1  # a fresh eval env per evaluation, same seed
    with pytest.raises(UsageError, match="evaluations need an env of their own"):
        mtrl.train(env=SyntheticVecEnv(3), run_dir=tmp_path / "no_eval", **TINY)
    # The command line cannot rebuild a user's env: one line saying how to resume it.
    done = subprocess.run(
        [sys.executable, "-m", "mtrl", "train", "--resume", str(run.run_dir)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "mtrl.train(..., env=your_env)" in done.stderr


class PointTask(gymnasium.Env):
    """A 1-D point to push past +1; the observation ends with the task's one-hot (2 tasks)."""

    def __init__(self, task: int) -> None:
        self.task = task
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)

    def _obs(self) -> np.ndarray:
        return np.array([self.x, self.task == 0, self.task == 1], dtype=np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.1, 0.1))
        return self._obs(), {}

    def step(self, action):
        direction = 1.0 if self.task == 0 else -1.0
        self.x += 0.2 * float(action[0])
        success = self.x * direction > 1.0
        return self._obs(), float(self.x * direction), bool(success), False, {"success": success}


def point_tasks(seed: int | None = None) -> GymnasiumTasks:
    vector = gymnasium.vector.SyncVectorEnv(
        [lambda task=task: gymnasium.wrappers.TimeLimit(PointTask(task), 10) for task in (0, 1)],
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
    )
    return GymnasiumTasks(vector, ["right", "left"], max_episode_steps=10, seed=seed)


def test_a_gymnasium_vector_env_steps_as_a_multitask_env_with_true_successors():
    env = point_tasks(seed=0)
    assert (env.num_tasks, env.obs_dim, env.action_dim, env.max_episode_steps) == (2, 3, 1, 10)
    obs = env.reset()
    assert obs.shape == (2, 3) and obs.dtype == np.float32
    ends = []
    for k in range(12):  # task 0 moves right 0.2 a step from |x| <= 0.1: past +1 at step 5 or 6
        step = env.step(np.ones((2, 1), dtype=np.float32))
        if step.terminated[0]:
            ends.append((k, step))
    assert ends and ends[0][0] in (4, 5)
    ends = [step for _, step in ends]
    assert ends and ends[0].success[0]
    assert ends[0].next_obs[0, 0] > 1.0 and abs(ends[0].obs[0, 0]) <= 0.1  # successor vs reset
    assert np.all(ends[0].obs[:, 1:] == np.eye(2, dtype=np.float32))
    with pytest.raises(mtrl.envs.EnvError, match="SAME_STEP"):
        GymnasiumTasks(gymnasium.vector.SyncVectorEnv([lambda: PointTask(0)]), ["right"])
    with pytest.raises(mtrl.envs.EnvError, match="one sub-env per task"):
        GymnasiumTasks(env.vector_env, ["a", "b", "c"])


def test_mtrl_trains_on_a_gymnasium_vector_env(tmp_path):
    run = mtrl.train(env=point_tasks, run_dir=tmp_path / "gym", **TINY)
    assert run.finished and set(run.results) == {"right", "left"}
    policy = mtrl.load_policy(run.run_dir)
    assert policy.task_names == ["right", "left"] and policy.state_dim == 1
    assert policy.predict(np.zeros(1), task="left").shape == (1,)
    results = mtrl.evaluate(policy, episodes=2, env=point_tasks(seed=3))
    assert set(results) == {"right", "left"} and results["right"].episodes == 2
    with pytest.raises(UsageError, match="pass env="):
        mtrl.evaluate(policy)


def test_predict_takes_a_task_per_row_as_indices_or_names(synthetic_run):
    """Meta-World's own MT10 vector env gives one state per task: ``task=np.arange(T)``."""
    policy = mtrl.load_policy(synthetic_run[0].run_dir)
    states = np.random.default_rng(1).uniform(-1, 1, (4, 2)).astype(np.float32)
    with_one_hot = policy.predict(np.concatenate([states, np.eye(4, dtype=np.float32)], 1))
    np.testing.assert_allclose(policy.predict(states, task=np.arange(4)), with_one_hot, atol=1e-6)
    names = ["point-0", "point-1", "point-2", "point-3"]
    np.testing.assert_allclose(policy.predict(states, task=names), with_one_hot, atol=1e-6)
    np.testing.assert_allclose(
        policy.predict(states[:2], task=[3, 3]), policy.predict(states[:2], task=3), atol=1e-6
    )
    with pytest.raises(UsageError, match=r"one per observation \(4\), got shape \(3,\)"):
        policy.predict(states, task=[0, 1, 2])
    with pytest.raises(UsageError, match="out of range"):
        policy.predict(states, task=[0, 1, 2, 9])
    with pytest.raises(UsageError, match="names or indices"):
        policy.predict(states, task=np.zeros(4))


def test_eval_of_a_checkpoint_outside_a_run_writes_next_to_it(synthetic_run, tmp_path):
    import shutil

    from mtrl.evaluation.command import evaluate_checkpoint

    result, _ = synthetic_run
    folder = tmp_path / "user" / "x"
    folder.mkdir(parents=True)
    copied = shutil.copy(result.checkpoint, folder / "point1.pt")
    evaluate_checkpoint(copied, episodes=1)
    assert (folder / "eval_point1.json").is_file()
    assert not (folder.parent / "eval").exists()  # never outside the folder the user named
    evaluate_checkpoint(result.checkpoint, episodes=1)  # a run's checkpoint: the run's eval/
    assert (result.run_dir / "eval" / f"eval_{result.checkpoint.stem}.json").is_file()


def test_eval_refuses_a_video_format_before_evaluating(synthetic_run, tmp_path):
    result, _ = synthetic_run
    out = tmp_path / "results.json"
    refused = subprocess.run(
        [sys.executable, "-m", "mtrl", "eval", str(result.checkpoint), "--video",
         str(tmp_path / "x.avi"), "--out", str(out)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "use a .mp4 or .gif path, got 'x.avi'" in refused.stderr
    assert not out.exists()  # refused before the evaluation, not after it


class SoftLoss(mtrl.GradientMethod):
    """A user's method defined in the training process (docs/plugins.md, for one process only);
    its constructor takes no seed, as a method that draws no random numbers need not."""

    def __init__(self, num_tasks: int, temperature: float = 1.0) -> None:
        super().__init__(num_tasks)
        self.temperature = temperature

    def weights(self, gram_matrix, task_losses, context):
        return torch.softmax(task_losses.double() / self.temperature, 0).to(task_losses.dtype)


def test_a_gradient_method_may_leave_out_the_seed(monkeypatch):
    from mtrl import gradients

    monkeypatch.setitem(gradients.GRADIENT_METHODS, "softloss", SoftLoss)
    method = gradients.make("softloss:temperature=0.5", num_tasks=3, seed=7)
    assert isinstance(method, SoftLoss) and method.temperature == 0.5
    gradients.check_spec("agent.critic_grad", "softloss")
    # A method whose constructor takes the seed still gets it.
    rlw = gradients.make("rlw", num_tasks=3, seed=7)
    assert torch.equal(rlw.generator.get_state(), torch.Generator().manual_seed(7).get_state())


def test_a_policy_trained_with_a_method_of_the_training_process_loads_where_it_is_unknown(
    tmp_path, monkeypatch
):
    from mtrl.gradients import GRADIENT_METHODS

    monkeypatch.setitem(GRADIENT_METHODS, "softloss", SoftLoss)
    fields = {**TINY, "agent": {**TINY["agent"], "critic_grad": "softloss"}}
    run = mtrl.train("synthetic", run_dir=tmp_path / "soft", **fields)
    assert run.finished
    monkeypatch.delitem(GRADIENT_METHODS, "softloss")  # as in any other process
    policy = mtrl.load_policy(run.run_dir)  # acting needs no gradient method
    assert policy.predict(np.zeros(2), task=0).shape == (2,)
    evaluated = subprocess.run(
        [sys.executable, "-m", "mtrl", "eval", str(run.run_dir), "--episodes", "1"],
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert "point-0" in evaluated.stdout
