"""``mtrl sweep --backend slurm`` with submitit's local executor (real processes): a grid finishes
and a second sweep skips it; a job signalled at its time limit checkpoints, is requeued and resumes;
a cancelled job's run resumes when the sweep is resubmitted; bad Slurm settings are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mtrl_process import TINY

from mtrl.config import ConfigError
from mtrl.experiments.slurm import SlurmOptions
from mtrl.experiments.sweep import load_sweep, run_state, run_sweep
from mtrl.training.lock import holder
from mtrl.training.logging import read_metrics

pytest.importorskip("submitit")
REPO = Path(__file__).resolve().parent.parent
LOCAL = {"cluster": "local", "backend": "slurm"}


def _write(tmp_path: Path, **fields) -> Path:
    sweep = {
        "name": "slurmy",
        "seeds": 1,
        "out": str(tmp_path / "runs"),
        "overrides": TINY,
        "slurm": {"time_min": 30},
        "runs": [{"preset": "synthetic", "label": "SAC"}],
        **fields,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep))
    return path


def test_a_grid_runs_as_local_slurm_jobs_and_a_second_sweep_skips_it(tmp_path):
    grid = {"preset": "synthetic", "label": "h{agent.hidden_sizes}",
            "values": {"agent.hidden_sizes": [[16, 16], [8, 8]]}}  # fmt: skip
    path = _write(tmp_path, seeds=2, runs=[], grid=grid, slurm={"time_min": 30, "runs_per_job": 2})
    sweep = load_sweep(path)
    results = run_sweep(sweep, say=lambda line: None, **LOCAL)
    assert sorted(r["status"] for r in results) == ["finished"] * 4, results
    assert all(run_state(run.run_dir) == "finished" for run in sweep.runs)
    assert len(_job_folders(tmp_path)) == 2  # two runs a job

    again = run_sweep(load_sweep(path), say=lambda line: None, **LOCAL)
    assert [r["status"] for r in again] == ["skipped (finished)"] * 4
    assert len(_job_folders(tmp_path)) == 2  # nothing submitted


def _job_folders(tmp_path: Path) -> list[Path]:
    """submitit's folder of each job (beside its job-independent one, ``%j``)."""
    return [p for p in (tmp_path / "runs" / ".submitit").iterdir() if p.name != "%j"]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _sweep_in_background(sweep) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(
        target=lambda: results.extend(run_sweep(sweep, say=lambda line: None, **LOCAL))
    )
    thread.start()
    return thread, results


def _job_of_running_run(run_dir: Path) -> int:
    """The pid of the submitit job process whose ``mtrl train`` writes ``run_dir``, once the run
    has a checkpoint."""
    deadline = time.time() + 240
    while time.time() < deadline:
        writer = holder(run_dir)
        if writer and "pid" in writer and list((run_dir / "checkpoints").glob("step_*.pt")):
            return _parent(writer["pid"])
        time.sleep(0.2)
    raise AssertionError("the run never wrote a checkpoint")


def _train_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]


def test_a_job_at_its_time_limit_checkpoints_is_requeued_and_resumes(tmp_path):
    # A 10-minute limit: submitit counts any signal as the time limit's (past max(80%, limit - 10
    # min)), which a job that cannot checkpoint does not survive; the signal comes from the test.
    overrides = [*TINY, "total_steps=3000", "log_every=100"]
    path = _write(tmp_path, overrides=overrides, slurm={"time_min": 10})
    sweep = load_sweep(path)
    (run,) = sweep.runs
    thread, results = _sweep_in_background(sweep)
    os.kill(_job_of_running_run(run.run_dir), signal.SIGUSR2)  # Slurm's signal before the limit
    thread.join(timeout=600)
    assert [r["status"] for r in results] == ["finished"], results
    commands = [
        line for line in Path(f"{run.run_dir}.log").read_text().splitlines() if "$ mtrl" in line
    ]
    assert len(commands) == 2 and "--resume" in commands[1]  # requeued: resumed, not restarted
    steps = _train_steps(run.run_dir)
    assert steps == sorted(set(steps)) and steps[-1] == 3000


def test_a_cancelled_job_resumes_from_its_checkpoint_when_the_sweep_is_resubmitted(tmp_path):
    path = _write(tmp_path, overrides=[*TINY, "total_steps=3000", "log_every=100"])
    sweep = load_sweep(path)
    (run,) = sweep.runs
    thread, results = _sweep_in_background(sweep)
    job = _job_of_running_run(run.run_dir)
    os.kill(_parent(job), signal.SIGINT)  # what LocalJob.cancel() does to the job's controller
    thread.join(timeout=600)
    assert [r["status"] for r in results] == ["failed"], results
    deadline = time.time() + 120
    while holder(run.run_dir) is not None and time.time() < deadline:
        time.sleep(0.2)  # the run stops at a step boundary, writing its checkpoint
    assert run_state(run.run_dir) == "resumable"
    stopped_at = _train_steps(run.run_dir)[-1]
    assert 0 < stopped_at < 3000

    again = run_sweep(load_sweep(path), say=lambda line: None, **LOCAL)
    assert [(r["status"], r["started_as"]) for r in again] == [("finished", "resumable")], again
    steps = _train_steps(run.run_dir)
    assert steps == sorted(set(steps)) and steps[-1] == 3000 and stopped_at in steps


def _sweep_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "sweep", *args], capture_output=True, text=True, cwd=REPO
    )


@pytest.mark.parametrize(
    "fields, flags, message",
    [
        ({"slurm": {"time_min": 30, "partiton": "gpu"}}, [], "slurm: unknown key partiton"),
        ({"slurm": {"time_min": -5}}, [], "slurm.time_min must be a number > 0, got -5"),
        ({"slurm": {"time_min": 0}}, [], "slurm.time_min must be a number > 0, got 0"),
        ({}, ["--slurm-time-min", "0"], "slurm.time_min must be a number > 0, got 0.0"),
        ({"slurm": {}}, [], "needs each job's time limit: slurm.time_min (--slurm-time-min)"),
        ({"slurm": {"time_min": 30, "gpus": 0.5}}, [], "slurm.gpus must be a whole number"),
        (
            {"resources": {"cpus": 1, "gpus": 0.25}},
            ["--slurm-gpus", "0"],
            "each job runs 4 runs of 0.25 GPU (resources.gpus), 1 in all, but slurm.gpus "
            "(--slurm-gpus) gives it 0",
        ),
        ({"resources": {"cpus": 1, "gpus": 1.5}}, [], "Slurm gives whole GPUs"),
        (
            {"resources": {"cpus": 4}},
            ["--slurm-cpus", "2"],
            "each job runs 1 run of 4 CPU (resources.cpus), 4 in all, but slurm.cpus",
        ),
        ({"slurm": {"time_min": 1, "signal_delay_s": 60}}, [], "must be shorter than the time"),
        ({}, ["--slurm-partition", "gpu", "--backend", "ray"], "--slurm-partition needs --backend"),
    ],
)
def test_slurm_settings_no_job_can_have_are_refused_before_anything_starts(
    tmp_path, fields, flags, message
):
    path = _write(tmp_path, **fields)
    result = _sweep_cli(
        str(path), *(flags if "--backend" in flags else ["--backend", "slurm", *flags])
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_without_sbatch_the_slurm_backend_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="sbatch, which is not on PATH"):
        run_sweep(load_sweep(_write(tmp_path)), backend="slurm", say=lambda line: None)
    assert not (tmp_path / "runs").exists()


def test_flags_override_the_files_slurm_section_and_the_dry_run_shows_the_jobs(tmp_path):
    path = _write(
        tmp_path,
        seeds=4,
        resources={"cpus": 1, "gpus": 0},
        slurm={"time_min": 30, "partition": "cpu", "runs_per_job": 2},
    )
    options = load_sweep(path).slurm.merged({"partition": "big", "time_min": None})
    assert options == SlurmOptions(partition="big", time_min=30, runs_per_job=2)
    result = _sweep_cli(str(path), "--dry-run", "--backend", "slurm", "--slurm-cluster", "local",
                        "--slurm-partition", "big", "--slurm-cpus", "6")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "local: 2 jobs of 2 runs on partition big, each 6 CPUs, 0 GPUs, 30 min" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_the_sbatch_file_asks_for_what_the_sweep_says():
    from submitit.slurm.slurm import _make_sbatch_string

    from mtrl.experiments.slurm import job_shape, sbatch_parameters

    options = SlurmOptions(partition="gpu", time_min=90.5, mem_gb=8, account="lab", qos="low")
    shape = job_shape(2, 0.25, options, "s")  # 4 runs of 0.25 GPU and 2 CPUs share a job
    assert (shape.runs_per_job, shape.gpus, shape.cpus, shape.threads) == (4, 1, 8, 2)
    text = _make_sbatch_string("python -m x", "/tmp/f", **sbatch_parameters(options, shape, "s", 3))
    for line in ("--partition=gpu", "--time=91", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--mem=8192MB", "--account=lab", "--qos=low", "--signal=USR2@120",
                 "--job-name=mtrl-s"):  # fmt: skip
        assert f"#SBATCH {line}" in text
