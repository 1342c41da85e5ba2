"""The scripts in examples/ run as a user runs them (short budgets), and say what they promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mtrl_process import TINY, run_mtrl

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def run_example(name: str, tmp_path: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), "--run-dir", str(tmp_path / "run"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_tested_here():
    tested = {
        "train_and_evaluate.py",
        "custom_gradient_method.py",
        "early_stopping.py",
        "report_with_intervals.py",
    }
    assert {path.name for path in EXAMPLES} == tested


def test_train_and_evaluate(tmp_path):
    out = run_example("train_and_evaluate.py", tmp_path, "--steps", "300")
    assert "trained 300 steps" in out and "a batch of 8 states: actions (8, 2)" in out
    assert out.rstrip().splitlines()[-1].startswith("mean")  # the evaluation's table


def test_custom_gradient_method(tmp_path):
    out = run_example("custom_gradient_method.py", tmp_path, "--steps", "300")
    assert "weights on a conflicting Jacobian: [0.5, 0.5, 0.0]" in out
    assert "agreeing_mean: final mean success" in out and "after 300 steps" in out


def test_early_stopping_stops_then_resumes(tmp_path):
    # Target 0: the first evaluation (step 150 of 600) is good enough.
    out = run_example("early_stopping.py", tmp_path, "--steps", "600", "--target", "0.0")
    assert "run.json: interrupted at step 150 (stopped by callback StopAtSuccess.on_eval)" in out
    assert "resumed to step 600" in out


def test_report_with_intervals(tmp_path):
    out = run_example("report_with_intervals.py", tmp_path, "--steps", "300", "--seeds", "2")
    assert "| synthetic | SAC | " in out and "| synthetic | SAC+PCGrad | " in out
    assert "P(SAC > SAC+PCGrad) = " in out and (tmp_path / "run" / "report").is_dir()


def test_the_plugin_package_installs_and_trains_by_name_in_another_process(tmp_path):
    """examples/plugin as a user installs it (pip, into a folder of its own here), then found by
    its entry point by `mtrl train` and `mtrl eval` in fresh processes."""
    source = shutil.copytree(REPO / "examples" / "plugin", tmp_path / "plugin")
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    installed = subprocess.run([*pip, "--target", str(site), str(source)], capture_output=True)
    assert installed.returncode == 0, installed.stderr.decode()
    run_dir = tmp_path / "run"
    method = ["agent.critic_grad=agreeing_mean", "agent.actor_grad=agreeing_mean"]
    path = {"PYTHONPATH": str(site)}
    trained = run_mtrl("train", "--config", "synthetic", *method, *TINY, f"run_dir={run_dir}",
                       env=path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    evaluated = run_mtrl("eval", str(run_dir), "--episodes", "1", env=path)
    assert evaluated.returncode == 0, evaluated.stderr
