"""One run lifecycle (``mtrl.training.session``) for every trainer: the same lock, run.json,
logs, signals, callbacks and failure marking for the multi-task trainer and the independent
baseline; ``mtrl train`` is ``mtrl.train``; a resume reads its checkpoint once."""

from __future__ import annotations

import ast
import errno
import json
import os
from pathlib import Path

import pytest
import torch

import mtrl
from mtrl.errors import RunWriteError
from mtrl.training.lock import holder
from mtrl.training.logging import RunLogger, read_metrics

PACKAGE = Path(__file__).resolve().parent.parent / "mtrl"
LIFECYCLE = ("write_failure", "StopSignals", "RunLogger", "start_tracking")
TINY = {
    "total_steps": 100,
    "warmup_steps": 50,
    "log_every": 50,
    "eval_every": 50,
    "eval_episodes": 1,
    "final_eval_episodes": 1,
    "progress": False,
    "torch_threads": 1,
    "agent": {
        "hidden_sizes": [16],
        "batch_size_per_task": 16,
        "compile": False,
        "diagnostics_every": 0,
    },
}
ALGORITHMS = ["mt_sac", "independent"]


def _call_sites(names: tuple[str, ...]) -> dict[str, list[str]]:
    sites: dict[str, list[str]] = {name: [] for name in names}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = getattr(function, "id", None) or getattr(function, "attr", None)
            if name in sites:
                sites[name].append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return sites


def test_each_part_of_the_run_lifecycle_is_called_from_one_place():
    sites = _call_sites(LIFECYCLE)
    assert {name: len(found) for name, found in sites.items()} == dict.fromkeys(LIFECYCLE, 1), sites


def test_the_independent_baseline_fires_callbacks_and_stops_on_one(tmp_path):
    run_dir = tmp_path / "run"
    seen: list[tuple] = []
    recording = {
        "on_log": lambda step, scalars: seen.append(("log", step, sorted(scalars))),
        "on_checkpoint": lambda step, path: seen.append(("checkpoint", step, path.name)),
    }

    def stop_at_first_eval(step, results, final):
        seen.append(("eval", step, final, len(results)))
        return False

    stopper = mtrl.Callback(on_eval=stop_at_first_eval, **recording)
    fields = {**TINY, "agent": {**TINY["agent"], "algorithm": "independent"}}
    stopped = mtrl.train("synthetic", run_dir=run_dir, callbacks=stopper, **fields)
    assert not stopped.finished and stopped.step == 50
    assert seen == [
        ("log", 50, ["charts/env_steps_per_s"]),
        ("eval", 50, False, 4),
        ("checkpoint", 50, "step_0000000050"),
    ]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["reason"].endswith("Callback.on_eval")

    # A chunk killed before its checkpoint leaves records past it: the resume sets them aside,
    # as it does the multi-task trainer's, and logs that step again.
    with open(run_dir / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({"step": 100, "kind": "train"}) + "\n")
    seen.clear()
    watcher = mtrl.Callback(
        on_eval=lambda step, results, final: seen.append(("eval", step, final, len(results))),
        **recording,
    )
    finished = mtrl.train(resume=run_dir, callbacks=watcher)
    assert finished.finished and finished.step == 100
    assert seen == [
        ("log", 100, ["charts/env_steps_per_s"]),
        ("eval", 100, False, 4),
        ("checkpoint", 100, "step_0000000100"),
        ("eval", 100, True, 4),
    ]
    superseded = (run_dir / "metrics.superseded.jsonl").read_text().splitlines()
    assert superseded == ['{"step": 100, "kind": "train"}']
    assert [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"] == [50, 100]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("failure", ["error", "full disk"])
def test_a_failing_run_marks_run_json_failed_the_same_way_for_each_trainer(
    tmp_path, monkeypatch, algorithm, failure
):
    """A failure at the first log (step 50, before any checkpoint): a write the disk refused is
    RunWriteError's one line, anything else is raised as it is; run.json says failed, why and at
    which step, and the lock is released, whichever trainer ran."""
    run_dir = tmp_path / "run"

    def log(self, step, scalars, kind="train"):
        if failure == "full disk":
            where = str(run_dir / "metrics.jsonl")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where)
        raise RuntimeError("the loop broke")

    monkeypatch.setattr(RunLogger, "log", log)
    fields = {**TINY, "agent": {**TINY["agent"], "algorithm": algorithm}}
    expected = RunWriteError if failure == "full disk" else RuntimeError
    with pytest.raises(expected) as raised:
        mtrl.train("synthetic", run_dir=run_dir, **fields)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and info["step"] == 50
    if failure == "full disk":
        assert info["reason"] == (
            f"cannot write {run_dir / 'metrics.jsonl'} (No space left on device) at step 50"
        )
        assert str(raised.value) == (
            f"{info['reason']}; stopped, no checkpoint was written; free space (or fix the "
            f"disk), then resume with: mtrl train --resume {run_dir}"
        )
    else:
        assert info["reason"] == "RuntimeError: the loop broke"
    assert holder(run_dir) is None


def test_a_resume_reads_its_checkpoint_once(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    mtrl.train("synthetic", run_dir=run_dir, **TINY)
    loads = []
    load = torch.load

    def counted(*args, **kwargs):
        loads.append(args)
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    resumed = mtrl.train(resume=run_dir, total_steps=150)
    assert resumed.finished and resumed.step == 150
    assert len(loads) == 1


def test_mtrl_train_on_the_command_line_is_the_python_api(tmp_path, monkeypatch, capsys):
    """One place resolves a fresh run or a resume, its directory and its trainer."""
    import mtrl.api
    from mtrl.cli import main

    calls = []

    def train(config=None, **options):
        calls.append((config, options))
        return mtrl.api.RunResult(tmp_path, None, 7, None)

    monkeypatch.setattr(mtrl.api, "train", train)
    assert main(["train", "--resume", str(tmp_path), "--track", "total_steps=9"]) == 0
    assert main(["train", "--config", "synthetic", "seed=2"]) == 0
    assert calls == [
        (None, {"overrides": ["total_steps=9"], "resume": str(tmp_path), "track": True}),
        ("synthetic", {"overrides": ["seed=2"], "resume": None, "track": False}),
    ]
    assert capsys.readouterr().out.count("stopped at step 7; resume with: mtrl train") == 2
