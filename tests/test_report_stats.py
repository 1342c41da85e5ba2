"""`mtrl report`'s statistics, protocol checks and provenance, on fabricated run directories."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtrl import stats
from mtrl.cli import main
from mtrl.config import ConfigError, build_config, save_config
from mtrl.report import UNKNOWN_GOAL_SCHEME, make_report

REPO = Path(__file__).resolve().parent.parent
TASKS = [f"point-{i}" for i in range(6)]
STEPS = (500, 1000, 1500)
REPS = 500


def _protocol(seed: int, **changes) -> dict:
    return {
        "env": "synthetic:6",
        "reward_version": None,  # mtrl.run records none off Meta-World
        "max_episode_steps": 50,
        "eval_episodes": 5,
        "final_eval_episodes": 20,
        "goal_scheme": "each-training-goal-once",
        "steps_per_task": 1500,
        "seed": seed,
        "actor_parameters": 1234,
        "critic_parameters": 5678,
        **changes,
    }


def _fabricate(
    root: Path,
    label: str,
    seed: int,
    final: np.ndarray,
    protocol: dict | None = None,
    provenance: bool = True,
) -> Path:
    """A finished run directory: config.yaml, metrics.jsonl (evals and a final eval), run.json."""
    run_dir = root / label.replace("+", "_") / f"seed{seed}"
    run_dir.mkdir(parents=True)
    overrides = [
        "env.name=synthetic:6",
        f"label={label}",
        f"seed={seed}",
        "total_steps=1500",
        "final_eval_episodes=20",
    ]
    save_config(build_config(None, overrides), run_dir / "config.yaml")
    records = []
    for k, step in enumerate(STEPS):
        values = final if step == STEPS[-1] else final * (k + 1) / len(STEPS)
        kind = "final_eval" if step == STEPS[-1] else "eval"
        record = {"step": step, "kind": kind, "eval/mean_success_rate": float(values.mean())}
        record |= {f"tasks/{t}/success_rate": float(v) for t, v in zip(TASKS, values, strict=True)}
        records.append(record)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    info = {"status": "finished", "step": STEPS[-1], "parameter_counts": {"actor": 1, "critic": 2}}
    if protocol is not None:
        info["protocol"] = protocol
    if provenance:
        info["provenance"] = {
            "mtrl_version": "0.1.0",
            "git_commit": "abc123",
            "git_dirty": False,
            "versions": {"python": "3.11.7", "numpy": np.__version__},
            "command": f"mtrl train label={label} seed={seed}",
            "host": "test-host",
            "started_at": "2026-12-01T00:00:00+00:00",
            "ended_at": "2026-12-01T00:10:00+00:00",
        }
    (run_dir / "run.json").write_text(json.dumps(info))
    return run_dir


def _scores(seed: int, level: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(np.clip(rng.normal(level, 0.25, (5, len(TASKS))), 0, 1) * 20) / 20


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("runs")
    tables = {"SAC": _scores(1, 0.4), "SAC+PCGrad": _scores(2, 0.6)}
    for label, table in tables.items():
        for seed, row in enumerate(table):
            _fabricate(root, label, seed, row, _protocol(seed))
    return root, tables


def _float_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_report_statistics_equal_mtrl_stats_on_the_runs_scores(runs, tmp_path):
    root, tables = runs
    out = tmp_path / "report"
    report = make_report([root], out, bootstrap_reps=REPS, bootstrap_seed=7)
    for name in ("aggregates.csv", "aggregates.md", "aggregates.tex", "table.md", "table.tex"):
        assert (out / name).stat().st_size > 0
    for name in (
        "probability_of_improvement.png",
        "performance_profile_synthetic_6.png",
        "aggregates_synthetic_6.png",
        "curves_synthetic_6.png",
        "per_task_synthetic_6.png",
    ):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert out / name in report["files"]

    rows = {r["method"]: r for r in _float_rows(out / "aggregates.csv")}
    assert set(rows) == set(tables)
    for label, table in tables.items():
        expected = stats.aggregate_estimates(table, reps=REPS, seed=7)
        row = rows[label]
        assert (int(row["seeds"]), int(row["tasks"])) == table.shape
        for name, e in expected.items():
            got = [float(row[name]), float(row[f"{name}_ci_low"]), float(row[f"{name}_ci_high"])]
            assert got == pytest.approx(e.as_tuple(), abs=1e-12), (label, name)
        table_row = next(r for r in _float_rows(out / "table.csv") if r["method"] == label)
        assert float(table_row["mean"]) == pytest.approx(table.mean())
        assert float(table_row["ci_low"]) == pytest.approx(expected["mean"].low)
        assert float(table_row["iqm"]) == pytest.approx(expected["iqm"].point)

    improvement = _float_rows(out / "probability_of_improvement.csv")
    assert {(r["method_x"], r["method_y"]) for r in improvement} == {
        ("SAC", "SAC+PCGrad"),
        ("SAC+PCGrad", "SAC"),
    }
    e = stats.probability_of_improvement_estimate(
        tables["SAC"], tables["SAC+PCGrad"], reps=REPS, seed=7
    )
    for r in improvement:
        forward = r["method_x"] == "SAC"
        expected = e.as_tuple() if forward else (1 - e.point, 1 - e.high, 1 - e.low)
        got = (float(r["probability"]), float(r["ci_low"]), float(r["ci_high"]))
        assert got == pytest.approx(expected, abs=1e-12)
        assert int(r["tasks"]) == len(TASKS)

    summary = json.loads((out / "summary.json").read_text())
    profile = summary["performance_profiles"]["synthetic:6"]
    point, low, high = stats.performance_profile(tables["SAC"], profile["taus"], REPS, seed=7)
    assert profile["methods"]["SAC"]["profile"] == pytest.approx(point.tolist())
    assert profile["methods"]["SAC"]["low"] == pytest.approx(low.tolist())
    assert profile["methods"]["SAC"]["high"] == pytest.approx(high.tolist())

    # Provenance of every run, the protocol line under each table, parameter counts per method.
    assert len(summary["runs"]) == 10
    assert all(r["provenance"]["git_commit"] == "abc123" for r in summary["runs"])
    assert {r["protocol"]["seed"] for r in summary["runs"]} == set(range(5))
    protocol = summary["protocols"]["synthetic:6"]
    assert not protocol["mixed"] and protocol["protocols"][0]["steps_per_task"] == 1500
    assert protocol["parameters"]["SAC"] == {"actor": "1234", "critic": "5678"}
    for name in ("table.md", "aggregates.md"):
        text = (out / name).read_text()
        assert "Protocol (synthetic:6): env synthetic:6, reward_version None" in text
        assert "goal_scheme each-training-goal-once, steps_per_task 1500" in text
        assert "SAC 1234/5678; SAC+PCGrad 1234/5678" in text


def test_same_bootstrap_seed_same_numbers_and_one_seed_methods_get_points(runs, tmp_path):
    root, tables = runs
    first = make_report([root], tmp_path / "a", bootstrap_reps=200, bootstrap_seed=3)
    again = make_report([root], tmp_path / "b", bootstrap_reps=200, bootstrap_seed=3)
    assert first["summaries"] == again["summaries"]
    assert first["improvement"] == again["improvement"]

    single = make_report([root / "SAC" / "seed2"], tmp_path / "c", bootstrap_reps=200)
    (summary,) = single["summaries"]
    assert summary["seeds"] == 1
    for name, value in summary["aggregates"].items():
        assert value["low"] == value["point"] == value["high"], name
    assert summary["aggregates"]["mean"]["point"] == pytest.approx(tables["SAC"][2].mean())
    assert "[n/a]" in (tmp_path / "c" / "aggregates.md").read_text()
    assert "n/a (1 seed)" in (tmp_path / "c" / "table.md").read_text()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "report", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_mixed_protocols_are_refused_in_one_line_unless_asked_for(tmp_path, capsys):
    root = tmp_path / "runs"
    row = np.full(len(TASKS), 0.5)
    _fabricate(root, "SAC", 0, row, _protocol(0))
    _fabricate(root, "SAC+PCGrad", 0, row, _protocol(0, steps_per_task=1000))
    refused = _cli(str(root), "--out", str(tmp_path / "report"), "--bootstrap-reps", "50")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1, refused.stderr
    assert (
        f"runs in one table have different protocols: steps_per_task 1500 ({root / 'SAC' / 'seed0'})"
        f" vs 1000 ({root / 'SAC_PCGrad' / 'seed0'}); pass --mixed-protocols" in lines[0]
    )
    assert not (tmp_path / "report").exists()

    # In-process from here on: the same parser, handler and error formatting, without the
    # seconds a fresh interpreter takes to import torch.
    args = [str(root), "--out", str(tmp_path / "report"), "--bootstrap-reps", "50"]
    assert main(["report", *args, "--mixed-protocols"]) == 0
    text = (tmp_path / "report" / "table.md").read_text()
    assert "mixed protocols: (1)" in text and "steps_per_task 1000" in text
    assert "[SAC seeds 0]" in text and "[SAC+PCGrad seeds 0]" in text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["protocols"]["synthetic:6"]["mixed"]

    capsys.readouterr()
    assert main(["report", str(root), "--bootstrap-reps", "0", "--mixed-protocols"]) == 2
    assert "mtrl: error: --bootstrap-reps must be > 0, got 0" in capsys.readouterr().err


def test_runs_without_protocol_records_take_it_from_their_config(tmp_path):
    root = tmp_path / "runs"
    row = np.full(len(TASKS), 0.25)
    _fabricate(root, "SAC", 0, row, protocol=None, provenance=False)
    _fabricate(root, "SAC", 1, row, protocol=None, provenance=False)
    # A run whose final_eval record is lost (a torn last line) is scored from eval/final.json.
    torn = _fabricate(root, "SAC", 2, row + 0.5, protocol=None, provenance=False)
    lines = (torn / "metrics.jsonl").read_text().splitlines()
    (torn / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    (torn / "eval").mkdir()
    tasks = {t: {"success_rate": 0.75, "episodes": 20} for t in TASKS}
    (torn / "eval" / "final.json").write_text(json.dumps({"step": STEPS[-1], "tasks": tasks}))
    report = make_report([root], tmp_path / "report", bootstrap_reps=50)
    (summary,) = report["summaries"]
    assert summary["per_seed"] == {"0": 0.25, "1": 0.25, "2": 0.75}
    (protocol,) = report["protocols"]["synthetic:6"]["protocols"]
    assert protocol == {
        "env": "synthetic:6",
        "reward_version": None,  # as mtrl.run records it off Meta-World
        "max_episode_steps": 50,  # config's 0 resolved to the synthetic suite's default
        "final_eval_episodes": 20,
        "goal_scheme": UNKNOWN_GOAL_SCHEME,
        "steps_per_task": 1500,
        "methods": {"SAC": [0, 1, 2]},
    }
    assert report["protocols"]["synthetic:6"]["parameters"]["SAC"] == {"actor": "1", "critic": "2"}
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert [r["provenance"] for r in summary["runs"]] == [None, None, None]

    # An old run next to a new one with the same settings is still a different protocol (the
    # goal scheme is unknown), so it is refused.
    _fabricate(root, "SAC+PCGrad", 0, row, _protocol(0))
    with pytest.raises(ConfigError, match="goal_scheme unknown"):
        make_report([root], tmp_path / "report2", bootstrap_reps=50)
