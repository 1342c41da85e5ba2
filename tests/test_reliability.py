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

from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import build_config
from mtrl.errors import RunError, RunWriteError
from mtrl.experiments.sweep import (
    RUNNING_ELSEWHERE,
    execute_run,
    format_results,
    load_sweep,
    run_sweep,
)
from mtrl.training.checkpoint import (
    checkpoint_step,
    finite_agent_state,
    latest_checkpoint,
    load_checkpoint,
    step_checkpoints,
)
from mtrl.training.lock import LOCK_FILE, RunLockedError, acquire, holder
from mtrl.training.logging import read_metrics
from mtrl.training.replay import TaskReplay
from mtrl.training.trainer import Trainer

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


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_a_closed_terminal_stops_the_run_with_a_checkpoint_unless_nohup_ignores_it(tmp_path):
    """SIGHUP (the terminal went away) stops a run as SIGTERM does; under ``nohup`` (SIGHUP
    ignored) the run goes on."""
    hung_up, ignored = tmp_path / "hung_up", tmp_path / "nohup"
    args = ["total_steps=1000000", "checkpoint_every=1000000", "log_every=20", *FAST]
    process = start_training(hung_up, *args)
    nohup = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "train", *TINY, f"run_dir={ignored}", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    try:
        for run_dir, writer in ((hung_up, process), (ignored, nohup)):
            metrics = run_dir / "metrics.jsonl"
            wait_for(lambda m=metrics, w=writer: (m.exists() and m.stat().st_size > 0) or w.poll())
        process.send_signal(signal.SIGHUP)
        nohup.send_signal(signal.SIGHUP)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert f"resume with: mtrl train --resume {hung_up}" in stdout
        info = json.loads((hung_up / "run.json").read_text())
        assert info["status"] == "interrupted" and info["reason"] == "stopped by SIGHUP"
        assert load_checkpoint(latest_checkpoint(hung_up))["step"] == info["step"] > 0
        assert nohup.poll() is None  # still training
    finally:
        nohup.send_signal(signal.SIGTERM)
        nohup.communicate(timeout=120)
    assert json.loads((ignored / "run.json").read_text())["reason"] == "stopped by SIGTERM"


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


def test_partial_checkpoint_writes_of_dead_writers_are_removed_at_start_live_ones_kept(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    dead_pid = int(  # a process that has exited (and been reaped)
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed_mid_write = checkpoints / f".step_0000000100.pt.tmp-{dead_pid}"
        being_written = checkpoints / f".exported.pt.tmp-{live.pid}"
        for path in (killed_mid_write, being_written):
            path.write_bytes(b"MTRLCKPT partial")
        _trainer(tmp_path, "total_steps=20", "warmup_steps=10", *FAST).close()
        assert not killed_mid_write.exists()
        assert being_written.exists()
    finally:
        live.kill()
        live.wait()


def test_a_fresh_start_sets_aside_the_records_of_an_attempt_killed_before_its_first_checkpoint(
    tmp_path, capsys
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead_attempt = [json.dumps({"step": step, "kind": "train"}) for step in (10, 20)]
    (run_dir / "metrics.jsonl").write_text("\n".join(dead_attempt) + "\n" + '{"step": 3')
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "step": 0}))
    trainer = _trainer(tmp_path, "total_steps=30", "warmup_steps=10", *FAST)
    trainer.train()
    trainer.close()
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == [10, 20, 30]  # one attempt, each step once
    superseded = (run_dir / "metrics.superseded.jsonl").read_text().splitlines()
    assert superseded == [*dead_attempt, '{"step": 3']  # moved whole, torn line included
    said = [line for line in capsys.readouterr().err.splitlines() if "superseded" in line]
    assert said == [
        f"mtrl: {run_dir} held an attempt that stopped before its first checkpoint: its 3 "
        "metrics records were moved to metrics.superseded.jsonl; starting afresh"
    ]


def test_a_fresh_start_is_refused_where_an_independent_baseline_checkpointed(tmp_path):
    state = tmp_path / "run" / "checkpoints" / "independent" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"step": 100, "models": "step_0000000100"}))
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 100, "kind": "train"}\n')
    with pytest.raises(RunError, match="already holds a run; pass --resume"):
        _trainer(tmp_path, "total_steps=30", "warmup_steps=10", *FAST)
    assert not (tmp_path / "run" / "metrics.superseded.jsonl").exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 60-step run, checkpoints at 30 and 60 (each test resumes its own copy)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    overrides = ["warmup_steps=20", "total_steps=60", "log_every=30", f"run_dir={run_dir}"]
    trainer = _trainer(run_dir.parent, *FAST, *overrides, "checkpoint_every=30")
    trainer.train()
    trainer.close()
    return run_dir


def _edit_config(run_dir: Path, **dotted) -> None:
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key, value in dotted.items():
        *parents, leaf = key.split("__")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _truncate_config(run_dir: Path, keep: float, at_line: bool = True) -> None:
    """Cut at a line's end (valid YAML lacking keys) or, ``at_line`` false, mid-line (torn)."""
    text = (run_dir / "config.yaml").read_text()
    end = int(len(text) * keep)
    (run_dir / "config.yaml").write_text(text[: text.rfind("\n", 0, end) + 1 if at_line else end])


@pytest.mark.parametrize(
    ("damage", "overrides", "exit_code", "said"),
    [
        (
            lambda run: _edit_config(run, agent__gamma=0.5, agent__critic_grad="pcgrad", seed=7),
            ["total_steps=90"],
            2,
            "error: {run}/config.yaml differs from the checkpoint "
            "{run}/checkpoints/step_0000000060.pt in agent.critic_grad, agent.gamma, seed",
        ),
        (
            lambda run: _edit_config(run, agent__hidden_sizes=[32, 32]),
            ["total_steps=90"],
            2,
            "differs from the checkpoint {run}/checkpoints/step_0000000060.pt in agent.hidden_sizes",
        ),
        (lambda run: _truncate_config(run, 0.5), ["total_steps=90"], 2, "is truncated"),
        (lambda run: _truncate_config(run, 0.0), [], 2, "is truncated"),
        (lambda run: _truncate_config(run, 0.025, False), [], 2, "config.yaml: not valid YAML"),
        (
            lambda run: None,
            ["total_steps=40"],
            2,
            "error: total_steps=40 is below the step of the checkpoint "
            "{run}/checkpoints/step_0000000060.pt",
        ),
        (lambda run: None, [], 0, "mtrl: {run} finished at step 60 (eval/final.json)"),
        (lambda run: None, ["total_steps=60"], 0, "finished at step 60"),
    ],
    ids=["edited", "architecture", "truncated", "emptied", "torn", "shortened", "finished", "same"],
)
def test_a_resume_that_the_checkpoint_does_not_allow_is_one_line_and_changes_nothing(
    tmp_path, finished_run, damage, overrides, exit_code, said
):
    """The checkpoint's config is the run: config.yaml and the overrides may differ from it only
    in what a resume may change; a finished run is left as it is."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    damage(run_dir)
    before = snapshot(run_dir)
    done = resume(run_dir, *overrides)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == exit_code and len(lines) == 1, done.stderr
    assert said.format(run=run_dir) in lines[0]
    assert snapshot(run_dir) == before  # nothing rewritten, no second final evaluation


def test_a_resume_takes_config_yaml_edits_of_what_a_resume_may_change(tmp_path, finished_run):
    import shutil

    from mtrl.training.trainer import resume_config

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    _edit_config(run_dir, log_every=15, total_steps=90)
    config = resume_config(run_dir, ["eval_every=45"])
    assert (config.log_every, config.total_steps, config.eval_every) == (15, 90, 45)


def test_a_trainer_refuses_a_config_the_checkpoint_does_not_fit(tmp_path, finished_run):
    import dataclasses
    import shutil

    from mtrl.training.trainer import resume_config

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    config = resume_config(run_dir, ["total_steps=90"])
    wider = dataclasses.replace(config, agent=dataclasses.replace(config.agent, hidden_sizes=(32,)))
    with pytest.raises(RunError, match="differs from the checkpoint .* in agent.hidden_sizes"):
        Trainer(wider, run_dir, resume=True)


def test_the_keys_a_resume_may_change_are_documented_where_resume_is():
    from mtrl.training.trainer import RESUMABLE_KEYS

    section = (REPO / "docs" / "training.md").read_text().split("## Resume")[1].split("\n## ")[0]
    assert [key for key in RESUMABLE_KEYS if f"`{key}`" not in section] == []


def test_eval_of_a_run_still_training_says_so_and_which_checkpoint(tmp_path, finished_run, capsys):
    import shutil

    from mtrl.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "eval" / "final.json").unlink()
    out = ["--episodes", "1", "--out", str(tmp_path / "eval.json")]
    with acquire(run_dir):  # a live writer: this process stands in for the training one
        assert main(["eval", str(run_dir), *out]) == 0
        said = capsys.readouterr().out.splitlines()
        assert said[0] == (
            f"checkpoint: {run_dir / 'checkpoints' / 'step_0000000060.pt'} (step 60; the run is "
            f"still training, pid {os.getpid()} on host {socket.gethostname()}: its latest "
            "checkpoint, not its final policy)"
        )
    assert main(["eval", str(run_dir), *out]) == 0  # nobody writes it: the plain line
    assert capsys.readouterr().out.splitlines()[0].endswith("step_0000000060.pt (step 60)")


def test_eval_before_the_first_checkpoint_says_the_run_has_not_written_one(tmp_path, capsys):
    from mtrl.cli import main

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "step": 0}))
    with acquire(run_dir):
        assert main(["eval", str(run_dir)]) == 2
    assert capsys.readouterr().err == (
        f"mtrl: error: {run_dir} has not written a checkpoint yet: the run is still training "
        f"(pid {os.getpid()} on host {socket.gethostname()}); evaluate it after its first "
        "checkpoint\n"
    )
    assert main(["eval", str(run_dir)]) == 2  # nobody writes it
    assert "no checkpoint found" in capsys.readouterr().err


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
import mtrl.training.checkpoint as checkpoint
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

    import mtrl.training.logging

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
    monkeypatch.setattr(mtrl.training.logging, "open", opener, raising=False)


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


# ------------------------------------------------------- results that cannot be written where asked
@pytest.fixture(scope="module")
def routed_run(tmp_path_factory) -> Path:
    """A finished synthetic run with a task-routed actor (what eval, export and report read)."""
    from mtrl.cli import main

    run_dir = tmp_path_factory.mktemp("written") / "run"
    args = [*TINY, *FAST, "agent.actor=task_routed", "total_steps=100", f"run_dir={run_dir}"]
    assert main(["train", *args]) == 0
    return run_dir


def _command(name: str, run_dir: Path, out: Path) -> list[str]:
    return {
        "eval": ["eval", str(run_dir), "--episodes", "1", "--out", str(out / "eval.json")],
        "export": ["export", str(run_dir), "--task", "point-1", "--out", str(out / "p1.pt")],
        "report": ["report", str(run_dir), "--out", str(out), "--bootstrap-reps", "10"],
    }[name]


def _full_disk(monkeypatch, under: Path) -> None:
    """Every file opened for writing under ``under`` finds the disk full."""
    import builtins
    import errno
    import io

    real_open = builtins.open

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and str(file).startswith(str(under)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)


@pytest.mark.parametrize("command", ["eval", "export", "report"])
@pytest.mark.parametrize("place", ["full disk", "under a file", "read-only directory"])
def test_results_that_cannot_be_written_are_one_line_naming_the_path(
    routed_run, tmp_path, monkeypatch, capsys, command, place
):
    from mtrl.cli import main

    out = tmp_path / "out"
    if place == "full disk":
        out.mkdir()
        _full_disk(monkeypatch, out)
        says = "No space left on device"
    elif place == "under a file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "out"
        says = "Not a directory"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only directories")
        out.mkdir()
        out.chmod(0o500)
        says = "Permission denied"
    capsys.readouterr()
    assert main(_command(command, routed_run, out)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    if (command, place) == ("eval", "under a file"):  # eval checks --out before it evaluates
        assert line.startswith(f"mtrl: error: --out {out}") and "is a file" in line, line
    else:
        assert line.startswith(f"mtrl: error: cannot write {out}") and f"({says})" in line, line


# ---------------------------------------------------------- env workers whose trainer is killed
STEPPING_FOREVER = """
import functools, sys
import numpy as np
if sys.argv[1] == "sharded":
    from mtrl.envs.sharded import ShardedVecEnv
    from mtrl.envs.synthetic import SyntheticVecEnv
    env = ShardedVecEnv([functools.partial(SyntheticVecEnv, 2, seed=k) for k in range(3)])
else:
    from mtrl.envs import make_env
    env = make_env("reach-v3,push-v3,pick-place-v3", 0, vector=sys.argv[1], workers=3)
env.reset()
print("stepping", flush=True)
while True:
    env.step(np.zeros((env.num_tasks, env.action_dim)))
"""


@pytest.mark.parametrize("vector", ["sharded", pytest.param("async", marks=pytest.mark.metaworld)])
def test_env_workers_exit_quietly_when_their_trainer_is_killed(vector):
    """A SIGKILLed trainer's workers find their pipe closed mid-step: they exit, saying nothing
    (each printed a traceback of the closed pipe)."""
    process = subprocess.Popen(
        [sys.executable, "-c", STEPPING_FOREVER, vector],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "stepping", process.communicate()[1]
    time.sleep(1.0)  # mid-step, many times over
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)  # until the workers, which share it, close it
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
