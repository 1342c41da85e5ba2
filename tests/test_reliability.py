"""Runs survive signals, kills, non-finite losses and full disks without losing data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtrl.checkpoint import latest_checkpoint, load_checkpoint
from mtrl.config import build_config
from mtrl.logging import read_metrics
from mtrl.replay import TaskReplay
from mtrl.trainer import RunError, Trainer

REPO = Path(__file__).resolve().parent.parent
SMALL_SYNTHETIC = [
    "agent.hidden_sizes=[16,16]",
    "agent.batch_size_per_task=16",
    "warmup_steps=50",
    "eval_every=0",
    "final_eval_episodes=1",
    "progress=false",
]
TINY = ["--config", "configs/synthetic.yaml", *SMALL_SYNTHETIC]


def start_training(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "train", *TINY, f"run_dir={run_dir}", *overrides],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the training subprocess never got there")
        time.sleep(0.05)


def checkpoints_exist(run_dir: Path) -> bool:
    return any((run_dir / "checkpoints").glob("step_*.pt"))


def resume(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "train", "--resume", str(run_dir), *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sigterm_writes_a_checkpoint_and_exits_zero_with_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    process = start_training(
        run_dir, "total_steps=1000000", "checkpoint_every=1000000", "log_every=20"
    )
    wait_for(
        lambda: (
            (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").stat().st_size > 0
        )
    )
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert f"resume with: mtrl train --resume {run_dir}" in stdout
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    step = load_checkpoint(latest_checkpoint(run_dir))["step"]
    assert step == info["step"] > 0
    finished = resume(run_dir, f"total_steps={step + 30}")
    assert finished.returncode == 0, finished.stderr
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.1])
def test_sigkill_at_any_point_resumes_and_finishes(tmp_path, delay):
    run_dir = tmp_path / "run"
    process = start_training(run_dir, "total_steps=300", "checkpoint_every=40", "log_every=20")
    wait_for(lambda: checkpoints_exist(run_dir) or process.poll() is not None)
    time.sleep(delay)
    process.kill()
    process.communicate(timeout=60)
    latest = latest_checkpoint(run_dir)
    load_checkpoint(latest)  # whatever the kill interrupted, the latest checkpoint is whole
    finished = resume(run_dir)
    assert finished.returncode == 0, finished.stderr
    assert json.loads((run_dir / "run.json").read_text())["step"] == 300
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == list(range(20, 301, 20))  # every log step once: nothing lost, none repeated


def _trainer(tmp_path: Path, *overrides: str) -> Trainer:
    config = build_config(
        REPO / "configs" / "synthetic.yaml",
        [*SMALL_SYNTHETIC, "log_every=10", "checkpoint_every=100", *overrides],
    )
    return Trainer(config, tmp_path / "run")


def _poison_samples(monkeypatch, poisoned) -> None:
    """Replay batches with NaN rewards on the sample calls that ``poisoned(call)`` selects."""
    original = TaskReplay.sample
    calls = {"n": 0}

    def sample(self, batch_size, device="cpu"):
        batch = original(self, batch_size, device)
        calls["n"] += 1
        if poisoned(calls["n"]):
            batch.reward.fill_(float("nan"))
        return batch

    monkeypatch.setattr(TaskReplay, "sample", sample)


def test_a_nan_loss_is_skipped_and_counted(tmp_path, monkeypatch):
    _poison_samples(monkeypatch, lambda call: call in (5, 6, 30))
    trainer = _trainer(tmp_path, "total_steps=120")
    trainer.train()
    trainer.close()
    train = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert train[-1]["charts/nonfinite_updates"] == 3
    for param in trainer.agent.critic.parameters():
        assert torch.isfinite(param).all()


def test_repeated_nans_stop_the_run_and_keep_its_last_checkpoint(tmp_path, monkeypatch):
    _poison_samples(monkeypatch, lambda call: call > 100)  # from step 150 on
    trainer = _trainer(tmp_path, "total_steps=1000", "max_nonfinite_updates=20")
    with pytest.raises(RunError, match=r"20 updates in a row had non-finite .*step_0000000100"):
        trainer.train()
    trainer.close()
    payload = load_checkpoint(latest_checkpoint(tmp_path / "run"))
    assert payload["step"] == 100
    assert all(torch.isfinite(v).all() for v in payload["agent"]["critic"].values())
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_a_full_disk_fails_at_start(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1024))
    with pytest.raises(RunError, match="MiB free"):
        _trainer(tmp_path, "total_steps=100")


def test_a_run_dir_under_a_file_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = build_config(REPO / "configs" / "synthetic.yaml", ["progress=false"])
    with pytest.raises(RunError, match="not writable"):
        Trainer(config, blocker / "run")


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_signals_are_restored_after_training(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    trainer = _trainer(tmp_path, "total_steps=60")
    trainer.train()
    trainer.close()
    assert signal.getsignal(signal.SIGTERM) is before
