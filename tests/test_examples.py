"""The scripts in examples/ run as a user runs them (short budgets), and say what they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    tested = {"train_and_evaluate.py", "custom_gradient_method.py", "early_stopping.py"}
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
