"""Runs survive signals, kills, non-finite losses and full disks without losing data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtrl.agents.sac import MultiTaskSAC, finite_agent_state
from mtrl.checkpoint import checkpoint_step, latest_checkpoint, load_checkpoint, step_checkpoints
from mtrl.config import build_config
from mtrl.errors import RunError, RunWriteError
from mtrl.lock import LOCK_FILE, RunLockedError, acquire, holder
from mtrl.logging import read_metrics
from mtrl.replay import TaskReplay
from mtrl.sweep import RUNNING_ELSEWHERE, execute_run, format_results, load_sweep, run_sweep
from mtrl.trainer import Trainer

REPO = Path(__file__).resolve().parent.parent
SMALL_SYNTHETIC = [
    "agent.hidden_sizes=[16,16]",
    "agent.batch_size_per_task=16",
    "warmup_steps=50",
    "eval_every=0",
    "final_eval_episodes=1",
    "progress=false",
]
TINY = ["--config", "synthetic", *SMALL_SYNTHETIC]


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
    # The dead writer's lock record is still there; its lock went with it, so the resume is let in.
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == process.pid
    finished = resume(run_dir)
    assert finished.returncode == 0, finished.stderr
    assert json.loads((run_dir / "run.json").read_text())["step"] == 300
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == list(range(20, 301, 20))  # every log step once: nothing lost, none repeated


def _trainer(tmp_path: Path, *overrides: str) -> Trainer:
    config = build_config(
        REPO / "mtrl" / "presets" / "synthetic.yaml",
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


def test_a_nan_observation_is_left_out_of_simba_statistics_and_counted(tmp_path, monkeypatch):
    """One NaN observation (task 1, at step 20 of the warm-up) with SimBa bodies: the input
    norms leave it out, the run finishes with finite actions, and the step is counted."""
    from mtrl.envs.synthetic import SyntheticVecEnv

    original, calls = SyntheticVecEnv.step, {"n": 0}

    def step(self, actions):
        result = original(self, actions)
        calls["n"] += 1
        if calls["n"] == 20:
            result.obs[1, 0] = float("nan")
        return result

    monkeypatch.setattr(SyntheticVecEnv, "step", step)
    simba = "simba:blocks=1,width=16"
    trainer = _trainer(tmp_path, "total_steps=120", f"agent.actor={simba}", f"agent.critic={simba}")
    trainer.train()
    trainer.close()
    train = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert train[-1]["charts/nonfinite_inputs"] == 1
    assert finite_agent_state(load_checkpoint(latest_checkpoint(tmp_path / "run"))["agent"])


def test_a_nan_stop_names_the_last_checkpoint_with_finite_networks(tmp_path, monkeypatch):
    """A checkpoint written with non-finite networks (here: step 200's actor) is not named as
    the one to go back to, and a resume refuses to start from it."""
    original = MultiTaskSAC.state_dict

    def state_dict(self):
        state = original(self)
        if self.updates > 100:  # the checkpoint at step 200, not the one at 100
            state["actor"] = {k: v.clone().fill_(float("nan")) for k, v in state["actor"].items()}
        return state

    monkeypatch.setattr(MultiTaskSAC, "state_dict", state_dict)
    _poison_samples(monkeypatch, lambda call: call > 220)  # from step 270 on
    trainer = _trainer(tmp_path, "total_steps=1000", "max_nonfinite_updates=20")
    with pytest.raises(RunError, match=r"non-finite .*last good checkpoint: .*step_0000000100"):
        trainer.train()
    trainer.close()
    assert checkpoint_step(latest_checkpoint(tmp_path / "run")) == 200
    with pytest.raises(RunError, match=r"step_0000000200.pt: its networks are not finite.*0100"):
        Trainer(trainer.config, tmp_path / "run", resume=True)


def test_a_full_disk_fails_at_start(tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1024))
    with pytest.raises(RunError, match="MiB free"):
        _trainer(tmp_path, "total_steps=100")


def test_a_run_dir_under_a_file_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = build_config(REPO / "mtrl" / "presets" / "synthetic.yaml", ["progress=false"])
    with pytest.raises(RunError, match="not writable"):
        Trainer(config, blocker / "run")


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_signals_are_restored_after_training(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    trainer = _trainer(tmp_path, "total_steps=60")
    trainer.train()
    trainer.close()
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------ one writer per run directory
FAST = ["agent.hidden_sizes=[16]", "agent.diagnostics_every=0", "agent.compile=false"]


def mtrl_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_refused(process: subprocess.Popen, writer: subprocess.Popen, run_dir: Path) -> None:
    """Exit code 2 and one line naming the writer."""
    _, stderr = process.communicate(timeout=120)
    lines = stderr.strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1, stderr
    assert lines[0].startswith(f"mtrl: error: {run_dir} is being written by pid {writer.pid} ")
    assert f"on host {socket.gethostname()} since " in lines[0]
    assert lines[0].endswith("; wait for it or stop it")


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(run_dir)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in sorted(run_dir.rglob("*"))
    }


def test_a_second_writer_is_refused_in_one_line_and_the_first_keeps_its_history(tmp_path):
    run_dir = tmp_path / "run"
    writer = start_training(
        run_dir, "total_steps=1000", "checkpoint_every=100", "log_every=20", *FAST
    )
    try:
        wait_for(lambda: checkpoints_exist(run_dir) or writer.poll() is not None)
        writer.send_signal(signal.SIGSTOP)  # holds the lock, writes nothing until SIGCONT
        assert writer.poll() is None, writer.communicate()[1]
        before = snapshot(run_dir)
        # A resume and a fresh run into the same directory are refused; a reader goes ahead.
        second = mtrl_process("train", "--resume", str(run_dir))
        fresh = mtrl_process("train", *TINY, "total_steps=60", f"run_dir={run_dir}")
        reader = mtrl_process(
            "eval", str(run_dir), "--episodes", "1", "--out", str(tmp_path / "eval.json")
        )
        assert_refused(second, writer, run_dir)
        assert_refused(fresh, writer, run_dir)
        _, stderr = reader.communicate(timeout=120)
        assert reader.returncode == 0, stderr
        assert snapshot(run_dir) == before  # the refused ones wrote nothing, not even a lock file
    finally:
        writer.send_signal(signal.SIGCONT)
    _, stderr = writer.communicate(timeout=300)
    assert writer.returncode == 0, stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == 1000 and "resumed_at" not in info
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == list(range(20, 1001, 20))  # every logged step once, in order
    assert not (run_dir / "metrics.superseded.jsonl").exists()
    assert "total_steps: 1000" in (run_dir / "config.yaml").read_text()


def test_a_writer_in_the_same_process_is_refused_before_it_writes_and_close_releases(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = acquire(run_dir)
    assert holder(run_dir)["pid"] == os.getpid()  # answered without dropping the POSIX lock
    with pytest.raises(RunLockedError, match=r"being written by pid \d+ .*\(this process\)"):
        _trainer(tmp_path, "total_steps=60")
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE]  # nothing written
    assert holder(run_dir) is not None
    lock.release()
    assert holder(run_dir) is None
    trainer = _trainer(tmp_path, "total_steps=60", *FAST)
    assert holder(run_dir)["pid"] == os.getpid()
    trainer.close()
    assert holder(run_dir) is None


def test_a_file_system_without_locks_is_named_and_can_be_opted_out_of(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation, *args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with pytest.raises(RunLockedError, match="has no fcntl locks .*MTRL_RUN_LOCK=off"):
        acquire(tmp_path)
    monkeypatch.setenv("MTRL_RUN_LOCK", "off")
    acquire(tmp_path).release()


def test_a_sweep_rerun_skips_a_run_that_is_being_written(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        json.dumps(
            {
                "name": "busy",
                "out": str(tmp_path / "runs"),
                "overrides": [*SMALL_SYNTHETIC, *FAST, "total_steps=100000", "checkpoint_every=50"],
                "runs": [
                    {"preset": str(REPO / "mtrl" / "presets" / "synthetic.yaml"), "label": "SAC"}
                ],
            }
        )
    )
    (run,) = load_sweep(sweep_file).runs
    run.run_dir.parent.mkdir(parents=True)
    writer = mtrl_process(*run.train_args(threads=1))  # the sweep's first launch, still going
    try:
        wait_for(lambda: checkpoints_exist(run.run_dir) or writer.poll() is not None)
        writer.send_signal(signal.SIGSTOP)
        assert writer.poll() is None, writer.communicate()[1]
        lines: list[str] = []
        results = run_sweep(load_sweep(sweep_file), use_ray=False, say=lines.append)
        assert [r["status"] for r in results] == [RUNNING_ELSEWHERE]  # not resumed a second time
        assert f"pid {writer.pid}" in results[0]["error"]
        assert any(f"1 {RUNNING_ELSEWHERE}, 0 to run" in line for line in lines), lines
        assert f"| SAC | 0 | {RUNNING_ELSEWHERE} | {run.run_dir} |" in format_results(results)
        assert execute_run(run, threads=1)["status"] == RUNNING_ELSEWHERE  # a Ray worker's view
        assert not (run.run_dir.parent / f"{run.run_dir.name}.log").exists()  # never launched
    finally:
        writer.kill()  # a stopped process dies of SIGKILL too
        writer.communicate(timeout=60)
    assert holder(run.run_dir) is None


# ------------------------------------------------------------------------ a disk that fills up
FULL_DISK_AT_STEP_200 = """
import errno, io, os, sys
import mtrl.checkpoint as checkpoint
from mtrl.cli import main

class FullDisk(io.FileIO):  # half the bytes go down, then the disk is full
    def write(self, data):
        super().write(bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

def open_(path, mode="r", *args, **kwargs):
    if "step_0000000200" in str(path):
        return FullDisk(path, "w")
    return open(path, mode, *args, **kwargs)

checkpoint.open = open_  # what atomic_write_bytes calls
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_at_a_checkpoint_stops_cleanly_and_a_resume_finishes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, *FAST, "total_steps=300", "checkpoint_every=100", "log_every=20"]
    failed = subprocess.run(
        [sys.executable, "-c", FULL_DISK_AT_STEP_200, "train", *args, f"run_dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1, failed.stderr
    checkpoints = run_dir / "checkpoints"
    assert lines[0] == (
        f"mtrl: error: cannot write {checkpoints / 'step_0000000200.pt'} (No space left on "
        f"device) at step 200; stopped, last good checkpoint: {checkpoints / 'step_0000000100.pt'}; "
        f"free space (or fix the disk), then resume with: mtrl train --resume {run_dir}"
    )
    assert [p.name for p in checkpoints.iterdir()] == ["step_0000000100.pt"]  # no partial file
    assert load_checkpoint(latest_checkpoint(run_dir))["step"] == 100
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["reason"]

    finished = resume(run_dir)  # "space freed": the resume runs without the patch
    assert finished.returncode == 0, finished.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == 300 and "reason" not in info
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == list(range(20, 301, 20))
    assert [p.name for p in step_checkpoints(run_dir)][-1] == "step_0000000300.pt"


def _full_metrics_file(monkeypatch, after_step: int) -> None:
    import builtins
    import errno

    import mtrl.logging

    class FullAfter:
        def __init__(self, handle) -> None:
            self.handle = handle

        def write(self, text: str) -> int:
            if json.loads(text)["step"] > after_step:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(text)

        def close(self) -> None:
            self.handle.close()

    opener = lambda *args, **kwargs: FullAfter(builtins.open(*args, **kwargs))  # noqa: E731
    monkeypatch.setattr(mtrl.logging, "open", opener, raising=False)


def test_a_failed_metrics_write_stops_the_run_and_names_the_last_checkpoint(tmp_path, monkeypatch):
    _full_metrics_file(monkeypatch, after_step=150)
    trainer = _trainer(tmp_path, "total_steps=300", *FAST)
    with pytest.raises(RunWriteError) as failure:
        trainer.train()
    trainer.close()
    run_dir = tmp_path / "run"
    assert str(failure.value) == (
        f"cannot write {run_dir / 'metrics.jsonl'} (No space left on device) at step 160; "
        f"stopped, last good checkpoint: {run_dir / 'checkpoints' / 'step_0000000100.pt'}; "
        f"free space (or fix the disk), then resume with: mtrl train --resume {run_dir}"
    )
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["step"] == 160
    assert info["reason"] == str(failure.value).split("; stopped")[0]
    assert holder(run_dir) is None  # close() released the lock


FAILING_TENSORBOARD_AFTER_STEP_150 = """
import errno, os, sys
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.summary.writer.record_writer import RecordWriter
from mtrl.cli import main

original = RecordWriter.write

def write(self, data):  # runs in TensorBoard's writer thread
    if Event.FromString(data).step > 150:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    return original(self, data)

RecordWriter.write = write
sys.exit(main(sys.argv[1:]))
"""


def test_a_failed_tensorboard_write_is_one_line_not_a_thread_traceback(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY, *FAST, "total_steps=300", "checkpoint_every=100", "log_every=10"]
    failed = subprocess.run(
        [sys.executable, "-c", FAILING_TENSORBOARD_AFTER_STEP_150, "train", *args]
        + [f"run_dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1, failed.stderr  # no thread traceback
    assert lines[0].startswith(
        f"mtrl: error: cannot write {run_dir / 'tensorboard'} (Input/output error) at step 1"
    )
    assert f"last good checkpoint: {run_dir / 'checkpoints' / 'step_0000000100.pt'}" in lines[0]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
