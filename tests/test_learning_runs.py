"""The learning benchmarks' committed copies of their runs (``benchmarks/learning_runs.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mtrl.training.lock import acquire

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def learning_runs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import it as a sibling module
    import learning_runs

    yield learning_runs
    sys.modules.pop("learning_runs", None)


def _log(run_dir: Path, evaluated_steps: list[int]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    records = []
    for step in evaluated_steps:
        records.append({"kind": "train", "step": step, "charts/env_steps_per_s": 100.0})
        records.append({"kind": "eval", "step": step, "tasks/reach/success_rate": step / 100})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_run_another_process_is_writing_keeps_its_copy_until_it_stops(learning_runs, tmp_path):
    run_dir, copy = tmp_path / "runs" / "sac" / "seed0", tmp_path / "records" / "sac" / "seed0"
    _log(run_dir, [25, 50])
    assert learning_runs.keep_run_files(run_dir, copy)  # a stopped run: copied as it is
    written = (copy / "metrics.jsonl").read_bytes()
    assert learning_runs.evaluation_count(copy) == 2

    _log(run_dir, [25, 50, 75])  # it resumed, evaluated once more and is still training
    with acquire(run_dir):  # this process stands in for the training one
        assert not learning_runs.keep_run_files(run_dir, copy)  # e.g. a report beside the grid
        assert (copy / "metrics.jsonl").read_bytes() == written
    assert learning_runs.keep_run_files(run_dir, copy)  # its driver's copy once it stops
    assert learning_runs.evaluation_count(copy) == 3
    assert not (copy / "writer.lock").exists()


def test_a_copy_with_more_evaluations_than_the_run_here_is_kept(learning_runs, tmp_path):
    run_dir, copy = tmp_path / "runs" / "seed0", tmp_path / "records" / "seed0"
    _log(run_dir, [25, 50, 75])
    assert learning_runs.keep_run_files(run_dir, copy)
    _log(run_dir, [25])  # the seed restarted on a fresh machine, behind what was recorded
    assert not learning_runs.keep_run_files(run_dir, copy)
    assert learning_runs.evaluation_count(copy) == 3
    assert not learning_runs.keep_run_files(tmp_path / "gone", copy)
