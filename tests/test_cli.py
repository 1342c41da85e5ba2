"""The `mtrl` command as users run it: real Meta-World runs end to end, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from mtrl.training.checkpoint import load_checkpoint, step_checkpoints

REPO = Path(__file__).resolve().parent.parent
SMALL = [
    "agent.hidden_sizes=[32,32]",
    "agent.batch_size_per_task=16",
    "warmup_steps=50",
    "eval_episodes=1",
    "final_eval_episodes=1",
    "log_every=50",
    "env.max_episode_steps=60",
    "progress=false",
]


def mtrl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mtrl {' '.join(args)} failed:\n{result.stderr}")
    return result


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtrl: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def steps_of(run_dir: Path, kind: str) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record["step"] for record in map(json.loads, lines) if record["kind"] == kind]


def train_resume_eval(
    tmp_path: Path, env_name: str, tasks: list[str], extra: tuple[str, ...] = ()
) -> None:
    run_dir = tmp_path / "run"
    first = mtrl(
        "train",
        f"env.name={env_name}",
        *extra,
        "total_steps=100",
        "eval_every=100",
        "checkpoint_every=100",
        f"run_dir={run_dir}",
        *SMALL,
    )
    assert "success" in first.stdout and str(run_dir / "tensorboard") in first.stdout
    assert "final evaluation: 1 episode per task" in first.stderr  # not "1 episodes"
    assert [p.name for p in step_checkpoints(run_dir)] == ["step_0000000100.pt"]

    resumed = mtrl("train", "--resume", str(run_dir), "total_steps=150")
    assert "final" in resumed.stdout
    assert load_checkpoint(run_dir)["step"] == 150
    assert steps_of(run_dir, "train") == [50, 100, 150]  # the counter continued, nothing repeated
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == 150

    out = tmp_path / "eval.json"
    task_args = [arg for task in tasks for arg in ("--task", task)]
    evaluated = mtrl(
        "eval",
        str(run_dir / "checkpoints" / "best.pt"),
        *task_args,
        "--episodes",
        "2",
        "--out",
        str(out),
    )
    table = json.loads(out.read_text())
    assert list(table["tasks"]) == tasks and table["episodes"] == 2
    for task in tasks:
        assert task in evaluated.stdout
        assert 0.0 <= table["tasks"][task]["success_rate"] <= 1.0
        assert table["tasks"][task]["episodes"] == 2


@pytest.mark.metaworld
def test_mt1_trains_checkpoints_resumes_and_evaluates(tmp_path):
    train_resume_eval(tmp_path, "MT1:reach-v3", ["reach-v3"])


@pytest.mark.metaworld
def test_mt10_trains_checkpoints_resumes_and_evaluates_a_subset(tmp_path):
    # Stepped by two processes of five tasks each (env.vector=sharded), training and evaluation.
    train_resume_eval(
        tmp_path, "MT10", ["push-v3", "reach-v3"], ("env.vector=sharded", "env.workers=2")
    )


@pytest.mark.metaworld
def test_eval_renders_a_video_and_refuses_a_task_the_policy_never_saw(tmp_path):
    run_dir = tmp_path / "run"
    mtrl(
        "train",
        "env.name=MT1:reach-v3",
        "total_steps=60",
        "checkpoint_every=60",
        "eval_every=0",
        f"run_dir={run_dir}",
        *SMALL,
    )
    assert_one_line_error(
        mtrl("eval", str(run_dir), "--task", "hammer-v3", check=False),
        "not trained on hammer-v3",
        "reach-v3",
    )
    video = tmp_path / "reach.gif"
    result = mtrl("eval", str(run_dir), "--episodes", "1", "--video", str(video))
    assert f"video: {video}" in result.stdout
    frames = imageio.mimread(video)
    assert len(frames) >= 2 and frames[0].ndim == 3 and frames[0].std() > 0  # not a blank image


@pytest.mark.metaworld
def test_a_task_routed_policy_exports_one_tasks_path_that_eval_runs(tmp_path):
    run_dir = tmp_path / "run"
    mtrl(
        "train",
        "env.name=MT10",
        "agent.actor=task_routed:route=soo",
        "agent.critic=task_routed",
        "total_steps=60",
        "checkpoint_every=60",
        "eval_every=0",
        f"run_dir={run_dir}",
        *SMALL,
    )
    policy_file = tmp_path / "push.pt"
    exported = mtrl("export", str(run_dir), "--task", "push-v3", "--out", str(policy_file))
    assert str(policy_file) in exported.stdout
    payload = load_checkpoint(policy_file)
    assert payload["kind"] == "task_policy" and payload["task"] == "push-v3"
    assert set(payload["policy"]) == {f"net.{k}.{p}" for k in (0, 2, 4) for p in ("weight", "bias")}

    # The exported path acts exactly as the full actor does on push-v3's rows.
    from mtrl.agents.sac import MultiTaskSAC
    from mtrl.config import from_dict
    from mtrl.evaluation.policy import load_task_policy

    full = load_checkpoint(run_dir)
    agent = MultiTaskSAC(full["obs_dim"], full["action_dim"], 10, from_dict(full["config"]).agent)
    agent.load_state_dict(full["agent"])
    obs = torch.randn(5, full["obs_dim"])
    obs[:, -10:] = torch.nn.functional.one_hot(torch.tensor(1), 10)  # push-v3 is task 1
    expected = agent.act(obs.numpy(), deterministic=True)
    actions = load_task_policy(policy_file, payload).act(obs).numpy()
    assert np.allclose(actions, expected, atol=1e-6)

    out = tmp_path / "eval.json"
    mtrl("eval", str(policy_file), "--episodes", "1", "--out", str(out))
    assert list(json.loads(out.read_text())["tasks"]) == ["push-v3"]
    assert_one_line_error(
        mtrl("eval", str(policy_file), "--task", "reach-v3", check=False),
        "not trained on reach-v3",
    )
    assert_one_line_error(
        mtrl("export", str(run_dir), "--task", "hammer-v3", "--out", "x.pt", check=False),
        "not trained on hammer-v3",
    )


def test_export_refuses_an_actor_without_task_paths(tmp_path):
    run_dir = tmp_path / "run"
    mtrl(
        "train",
        "--config",
        "synthetic",
        "total_steps=60",
        "warmup_steps=50",
        "agent.batch_size_per_task=16",
        "eval_every=0",
        "final_eval_episodes=1",
        f"run_dir={run_dir}",
        "progress=false",
    )
    assert_one_line_error(
        mtrl("export", str(run_dir), "--task", "point-0", "--out", "x.pt", check=False),
        "only a task_routed actor",
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["env.name=MT1:reach-v9"], ["unknown Meta-World task", "reach-v3"]),
        (["agent.critc=multihead"], ["unknown config key", "agent.critic"]),
        (["agent.critic=multihaed"], ["agent.critic", "multihead"]),
        (["agent.gamma=1.5"], ["agent.gamma"]),
        (["total_steps=lots"], ["total_steps", "integer"]),
        (["seed"], ["key=value"]),
        (["--config", "configs/nope.yaml"], ["config file not found"]),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, fragments):
    result = mtrl("train", *args, f"run_dir={tmp_path / 'run'}", check=False)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()  # nothing was started


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04not a checkpoint at all")
    assert_one_line_error(mtrl("eval", str(corrupt), check=False), "not an mtrl checkpoint")
    assert_one_line_error(mtrl("eval", str(tmp_path / "missing.pt"), check=False), "cannot read")
    assert_one_line_error(
        mtrl("train", "--resume", str(tmp_path / "none"), check=False), "config.yaml"
    )


def test_resume_of_a_finished_synthetic_run_extends_it(tmp_path):
    run_dir = tmp_path / "run"
    mtrl(
        "train",
        "--config",
        "synthetic",
        "total_steps=60",
        "warmup_steps=30",
        "agent.batch_size_per_task=16",
        "checkpoint_every=60",
        "eval_every=0",
        "log_every=30",
        "agent.hidden_sizes=[16]",
        f"run_dir={run_dir}",
        "progress=false",
    )
    assert_one_line_error(
        mtrl("train", "--config", "synthetic", f"run_dir={run_dir}", check=False),
        "--resume",
    )
    mtrl("train", "--resume", str(run_dir), "total_steps=90")
    assert steps_of(run_dir, "train") == [30, 60, 90]


def test_bench_options_reach_the_benchmark_in_order(monkeypatch):
    import mtrl.experiments.bench
    from mtrl.cli import main

    received = []
    monkeypatch.setattr(mtrl.experiments.bench, "main", lambda argv: received.append(argv) or 0)
    args = ["--quick", "--device", "cpu", "--batch", "8", "--hidden", "16", "16", "--rounds", "2"]
    assert main(["bench", *args]) == 0
    assert received == [args]


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"episodes": 10**12}, ["--episodes: at most"]),
        ({"episodes": 0}, ["--episodes: must be > 0"]),
        ({"seed": -1}, ["--seed: must be >= 0"]),
        ({"seed": 10**23}, ["--seed: at most"]),
        ({"out": "{tmp}"}, ["--out", "is a directory"]),
        ({"out": "{tmp}/file.txt/eval.json"}, ["--out", "file.txt is a file"]),
    ],
)
def test_eval_options_are_refused_before_anything_runs(tmp_path, monkeypatch, options, fragments):
    import mtrl.evaluation.command
    from mtrl.errors import UsageError

    def ran(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the options were checked")

    monkeypatch.setattr(mtrl.evaluation.command, "load_policy", ran)
    (tmp_path / "file.txt").write_text("a file")
    options = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in options.items()}
    with pytest.raises(UsageError) as error:
        mtrl.evaluation.command.evaluate_checkpoint(tmp_path / "ckpt.pt", **options)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_eval_options_written_as_floats_are_one_line(tmp_path):
    checkpoint = REPO / "tests" / "data" / "step_0000000120.pt"
    result = mtrl("eval", str(checkpoint), "--episodes", "1e12", check=False)
    assert_one_line_error(result, "--episodes: at most")
    assert_one_line_error(mtrl("eval", str(checkpoint), "--seed", "x", check=False), "--seed")
