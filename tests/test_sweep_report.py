"""`mtrl sweep` (local Ray, skip/resume, bad files) and `mtrl report` (tables, figures, numbers)."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtrl.analysis.report import make_report
from mtrl.analysis.stats import aggregate_estimates, interquartile_mean
from mtrl.config import ConfigError
from mtrl.experiments.sweep import load_sweep, run_state, run_sweep
from mtrl.training.logging import read_metrics

REPO = Path(__file__).resolve().parent.parent
SYNTHETIC = REPO / "mtrl" / "presets" / "synthetic.yaml"
TINY = [
    "total_steps=300",
    "warmup_steps=100",
    "log_every=50",
    "eval_every=150",
    "eval_episodes=2",
    "final_eval_episodes=3",
    "checkpoint_every=100",
    "agent.hidden_sizes=[16,16]",
    "agent.batch_size_per_task=16",
    "agent.diagnostics_every=10",
]


def _write_sweep(tmp_path: Path, out: Path, seeds: int = 2) -> Path:
    """Two presets (the synthetic one, and a PCGrad variant of it) x ``seeds`` seeds."""
    pcgrad = tmp_path / "pcgrad.yaml"
    pcgrad.write_text(
        f"base: {SYNTHETIC}\nlabel: SAC+PCGrad\n"
        "agent:\n  critic_grad: pcgrad\n  actor_grad: pcgrad\n"
    )
    sweep = {
        "name": "tiny",
        "seeds": seeds,
        "out": str(out),
        "overrides": TINY,
        "resources": {"cpus": 1},
        "runs": [{"preset": str(SYNTHETIC), "label": "SAC"}, {"preset": "pcgrad.yaml"}],
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(json.dumps(sweep))  # JSON is YAML
    return path


def _final_scores(run_dir: Path) -> tuple[float, dict[str, float]]:
    final = [r for r in read_metrics(run_dir) if r["kind"] == "final_eval"][-1]
    tasks = {
        k.split("/")[1]: v for k, v in final.items() if k.startswith("tasks/") and "success" in k
    }
    return final["eval/mean_success_rate"], tasks


def test_sweep_on_local_ray_then_rerun_skips_and_report_matches_the_metrics(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "runs"
    sweep = load_sweep(_write_sweep(tmp_path, out))
    assert len(sweep.runs) == 4
    lines: list[str] = []
    results = run_sweep(sweep, num_cpus=2, say=lines.append)
    assert [r["status"] for r in results] == ["finished"] * 4, results
    assert all(run_state(run.run_dir) == "finished" for run in sweep.runs)

    again = run_sweep(load_sweep(_write_sweep(tmp_path, out)), num_cpus=2, say=lines.append)
    assert [r["status"] for r in again] == ["skipped (finished)"] * 4
    assert any("4 finished already, 0 to run" in line for line in lines)

    report_dir = tmp_path / "report"
    report = make_report([out], report_dir)
    for name in ("table.md", "table.csv", "table.tex", "per_task.csv", "per_task.md"):
        assert (report_dir / name).stat().st_size > 0
    for name in (
        "curves_synthetic.png",
        "per_task_synthetic.png",
        "conflict_synthetic.png",
        "triad_synthetic.png",
    ):
        assert (report_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not report["skipped"]

    rows = {row["method"]: row for row in csv.DictReader((report_dir / "table.csv").open())}
    per_task = list(csv.DictReader((report_dir / "per_task.csv").open()))
    assert set(rows) == {"SAC", "SAC+PCGrad"}
    # The cost column: seconds per update from the runs' logs, relative to plain MT-SAC.
    assert float(rows["SAC"]["update_cost"]) == 1.0
    assert 0.2 < float(rows["SAC+PCGrad"]["update_cost"]) < 20
    assert float(rows["SAC+PCGrad"]["update_seconds"]) > 0
    assert "update time (x SAC)" in (report_dir / "table.md").read_text()
    for label, slug in (("SAC", "SAC"), ("SAC+PCGrad", "SAC+PCGrad")):
        scores = [_final_scores(out / slug / f"seed{seed}") for seed in (0, 1)]
        assert float(rows[label]["mean"]) == pytest.approx(np.mean([s for s, _ in scores]))
        assert int(rows[label]["seeds"]) == 2
        assert (
            float(rows[label]["ci_low"])
            <= float(rows[label]["mean"])
            <= float(rows[label]["ci_high"])
        )
        for row in (r for r in per_task if r["method"] == label):
            expected = np.mean([tasks[row["task"]] for _, tasks in scores])
            assert float(row["success_rate"]) == pytest.approx(expected)
    assert "SAC+PCGrad" in (report_dir / "table.tex").read_text().replace("\\", "")


def test_a_killed_run_is_resumed_by_the_next_sweep(tmp_path):
    out = tmp_path / "runs"
    sweep = load_sweep(_write_sweep(tmp_path, out, seeds=1))
    first = sweep.runs[0]
    first.run_dir.parent.mkdir(parents=True)
    process = subprocess.Popen(
        # Long enough that the kill (0.5 s after the checkpoint at step 100) lands mid-run;
        # diagnostics off: a diagnostic update costs ~10x a plain one and adds nothing here.
        [
            sys.executable,
            "-m",
            "mtrl.cli",
            *first.train_args(threads=1),
            "total_steps=2000",
            "agent.diagnostics_every=0",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list((first.run_dir / "checkpoints").glob("step_*.pt")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert run_state(first.run_dir) == "resumable"

    results = run_sweep(sweep, use_ray=False, say=lambda line: None)
    by_label = {r["label"]: r for r in results}
    assert by_label["SAC"]["status"] == "finished" and by_label["SAC"]["started_as"] == "resumable"
    assert by_label["SAC+PCGrad"]["started_as"] == "new"
    steps = [r["step"] for r in read_metrics(first.run_dir) if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 2000  # every step once, to the end


@pytest.mark.parametrize(
    "body, message",
    [
        ({"runs": [{"preset": "configs/synthetic.yaml"}], "seed": 3}, "unknown key seed"),
        ({"runs": []}, "runs must be a non-empty list"),
        ({"runs": [{"preset": "nope.yaml"}]}, "config file not found"),
        ({"runs": [{"preset": "configs/synthetic.yaml", "overides": []}]}, "unknown key overides"),
        (
            {"runs": [{"preset": "configs/synthetic.yaml", "overrides": ["agent.critic=mmeo"]}]},
            "runs[0]: agent.critic: unknown 'mmeo'",
        ),
        ({"runs": [{"preset": "configs/synthetic.yaml"}] * 2}, "repeats runs[0]"),
        ({"runs": [{"preset": "configs/synthetic.yaml"}], "seeds": -1}, "seeds must be"),
        ({"runs": [{"preset": "configs/synthetic.yaml"}], "resources": {"cpu": 1}}, "unknown key"),
        (
            {
                "runs": [
                    {"preset": "configs/synthetic.yaml", "label": "a/b"},
                    {"preset": "configs/synthetic.yaml", "label": "a_b"},
                ]
            },
            "runs[1]: label 'a_b' has the run directory a_b of runs[0] ('a/b')",
        ),
        ({"runs": [{"preset": "configs/synthetic.yaml", "label": ".."}]}, "label '..' names no"),
        ({"runs": [{"preset": "configs/synthetic.yaml", "label": "/"}]}, "label '/' names no"),
        (
            {"runs": [{"preset": "configs/synthetic.yaml", "overrides": ["seed=7"]}]},
            "runs[0]: override 'seed=7' would be replaced by the sweep's seed",
        ),
        (
            {"runs": [{"preset": "configs/synthetic.yaml"}], "overrides": ["run_dir=/tmp/x"]},
            "runs[0]: override 'run_dir=/tmp/x' would be replaced by the sweep's run directory",
        ),
    ],
)
def test_bad_sweep_files_fail_before_anything_runs(tmp_path, body, message):
    path = tmp_path / "sweep.yaml"
    text = json.dumps({"out": str(tmp_path / "runs"), **body})
    path.write_text(text.replace('"configs/synthetic.yaml"', json.dumps(str(SYNTHETIC))))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(path)
    assert not (tmp_path / "runs").exists()


def test_sweep_and_report_commands_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: 3\n")
    outside = tmp_path / "outside.yaml"
    outside.write_text(json.dumps({"runs": [{"preset": str(SYNTHETIC), "label": ".."}]}))
    for args, fragment in (
        (["sweep", str(bad)], "runs must be a non-empty list"),
        (["sweep", str(outside), "--out", str(tmp_path / "o")], "label '..' names no directory"),
        (["sweep", str(bad), "--max-parallel", "0"], "--max-parallel must be > 0"),
        (["report", str(tmp_path / "missing")], "no such run directory"),
        (["report", str(tmp_path)], "no run directories"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "mtrl.cli", *args], capture_output=True, text=True, cwd=REPO
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], result.stderr


def test_report_statistics_on_hand_computed_cases():
    assert interquartile_mean(np.arange(8.0)) == pytest.approx(3.5)  # mean of 2, 3, 4, 5
    assert interquartile_mean(np.array([0.0, 1.0, 1.0, 100.0])) == pytest.approx(1.0)
    # The report's intervals: stratified bootstrap over seeds ([seeds, tasks] scores).
    constant = aggregate_estimates(np.full((3, 1), 0.5))["mean"]
    assert constant.as_tuple() == (0.5, 0.5, 0.5)
    mean = aggregate_estimates(np.array([[0.0], [1.0]] * 10))["mean"]
    assert 0.2 < mean.low < mean.point == 0.5 < mean.high < 0.8  # sd of the mean: 0.11


def test_independent_baseline_writes_the_common_layout_and_resumes(tmp_path):
    run_dir = tmp_path / "independent"
    args = [
        sys.executable,
        "-m",
        "mtrl.cli",
        "train",
        "--config",
        str(SYNTHETIC),
        *TINY,
        "agent.algorithm=independent",
        "label=Independent SAC",
        f"run_dir={run_dir}",
        "progress=false",
    ]
    half = subprocess.run([*args, "total_steps=150"], capture_output=True, text=True, cwd=REPO)
    assert half.returncode == 0, half.stderr
    assert run_state(run_dir) == "finished"
    resumed = subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "train", "--resume", str(run_dir), "total_steps=300"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert resumed.returncode == 0, resumed.stderr
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == 300
    assert info["parameter_counts"]["actor"] > 0
    evals = [r for r in read_metrics(run_dir) if r["kind"] in ("eval", "final_eval")]
    assert [r["step"] for r in evals if r["kind"] == "eval"] == [150, 300]
    final = json.loads((run_dir / "eval" / "final.json").read_text())
    assert sorted(final["tasks"]) == [f"point-{i}" for i in range(4)]
    assert {f"tasks/point-{i}/success_rate" for i in range(4)} <= set(evals[-1])
    report = make_report([run_dir], tmp_path / "report")
    (summary,) = report["summaries"]
    assert summary["method"] == "Independent SAC" and summary["seeds"] == 1
    assert summary["mean"] == pytest.approx(evals[-1]["eval/mean_success_rate"])


def _sweep_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtrl.cli", "sweep", *args], capture_output=True, text=True, cwd=REPO
    )


@pytest.mark.parametrize(
    "resources, flags, message",
    [
        (
            {"cpus": 1, "gpus": 0.25},
            [],
            "asks for 0.25 GPU (resources.gpus) but this machine has none",
        ),
        ({"cpus": 1, "gpus": 0.25}, ["--no-ray"], "but this machine has none"),
        ({"cpus": 1000}, [], "asks for 1000 CPUs (resources.cpus) but this machine has"),
        ({"cpus": 3}, ["--num-cpus", "2"], "but the local Ray (--num-cpus 2) has 2"),
    ],
)
def test_a_sweep_asking_for_more_than_the_machine_has_is_refused_before_anything_starts(
    tmp_path, resources, flags, message
):
    import torch

    if resources.get("gpus") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "runs"
    path = tmp_path / "sweep.yaml"
    runs = [{"preset": str(SYNTHETIC)}]
    path.write_text(json.dumps({"out": str(out), "resources": resources, "runs": runs}))
    result = _sweep_cli(str(path), *flags)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert result.stdout == "" and not out.exists()


def test_a_sweep_asking_for_more_than_the_cluster_has_is_refused_before_any_run(
    tmp_path, monkeypatch
):
    """With --address the check is the cluster's, after connecting: no task is submitted."""
    calls = []

    class FakeRay:
        def init(self, **kwargs):
            calls.append("init")

        def cluster_resources(self):
            return {"CPU": 8.0, "GPU": 1.0, "memory": 1e9}

        def remote(self, **kwargs):
            calls.append("remote")
            raise AssertionError("a task was defined")

        def shutdown(self):
            calls.append("shutdown")

    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    out = tmp_path / "runs"
    for resources, message in (
        ({"cpus": 1, "gpus": 2}, "asks for 2 GPUs (resources.gpus) but the Ray cluster at x has 1"),
        ({"cpus": 16}, "asks for 16 CPUs (resources.cpus) but the Ray cluster at x has 8"),
    ):
        path = tmp_path / "sweep.yaml"
        runs = [{"preset": str(SYNTHETIC)}]
        path.write_text(json.dumps({"out": str(out), "resources": resources, "runs": runs}))
        calls.clear()
        with pytest.raises(ConfigError, match=re.escape(message)):
            run_sweep(load_sweep(path), address="x", say=lambda line: None)
        assert calls == ["init", "shutdown"] and not out.exists()


def _status_rows(stdout: str) -> dict[tuple[str, str], tuple[str, str]]:
    """The dry run's table: (label, seed) -> (status, run directory)."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return {(r[0].strip(), r[1].strip()): (r[2].strip(), r[3].strip()) for r in rows[1:]}


def test_dry_run_lists_every_run_with_the_status_it_would_get_and_starts_nothing(tmp_path):
    from mtrl.training.lock import acquire

    out = tmp_path / "runs"
    sweep = load_sweep(_write_sweep(tmp_path, out))
    finished, resumable, held, new = sweep.runs
    finished.run_dir.mkdir(parents=True)
    (finished.run_dir / "run.json").write_text(json.dumps({"status": "finished"}))
    (resumable.run_dir / "checkpoints" / "independent").mkdir(parents=True)
    (resumable.run_dir / "checkpoints" / "independent" / "state.json").write_text("{}")
    held.run_dir.mkdir(parents=True)
    with acquire(held.run_dir):  # this process stands in for another sweep writing the run
        before = sorted(out.rglob("*"))
        result = _sweep_cli(str(tmp_path / "sweep.yaml"), "--dry-run")
        assert sorted(out.rglob("*")) == before  # no directory, log or lock made
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.splitlines()[0] == (
        "sweep tiny (dry run, nothing started): 4 runs, 1 finished already, "
        "1 running elsewhere, 2 to run"
    )
    assert _status_rows(result.stdout) == {
        ("SAC", "0"): ("skipped (finished)", str(finished.run_dir)),
        ("SAC", "1"): ("resume", str(resumable.run_dir)),
        ("SAC+PCGrad", "0"): ("running elsewhere", str(held.run_dir)),
        ("SAC+PCGrad", "1"): ("new", str(new.run_dir)),
    }


def _write_grid_sweep(tmp_path: Path, grid: dict, **extra) -> Path:
    path = tmp_path / "sweep.yaml"
    sweep = {"name": "grid", "out": str(tmp_path / "runs"), "grid": grid, **extra}
    path.write_text(
        json.dumps(sweep).replace('"configs/synthetic.yaml"', json.dumps(str(SYNTHETIC)))
    )
    return path


def test_a_grid_gives_one_run_per_combination_of_its_values_and_seed(tmp_path):
    grid = {
        "preset": "configs/synthetic.yaml",
        "overrides": ["total_steps=300"],
        "values": {"agent.actor_lr": [0.001, "3e-4"], "agent.hidden_sizes": [[16, 16], [32]]},
    }
    sweep = load_sweep(_write_grid_sweep(tmp_path, grid, seeds=[3, 5]))
    assert [(run.label, run.seed) for run in sweep.runs] == [
        (f"agent.actor_lr={lr} agent.hidden_sizes={sizes}", seed)
        for lr in ("0.001", "3e-4")
        for sizes in ("[16, 16]", "[32]")
        for seed in (3, 5)
    ]
    first = sweep.runs[0]
    assert first.overrides == (
        "total_steps=300",
        "agent.actor_lr=0.001",
        "agent.hidden_sizes=[16, 16]",
    )
    assert first.preset == SYNTHETIC and first.run_dir == (
        tmp_path / "runs" / "agent.actor_lr_0.001_agent.hidden_sizes_16_16" / "seed3"
    )
    # A label template names the runs; grids sit beside runs:, and their labels are checked together.
    grid["label"] = "SAC lr {agent.actor_lr} net {agent.hidden_sizes}"
    runs = [{"preset": "configs/synthetic.yaml", "label": "SAC"}]
    sweep = load_sweep(_write_grid_sweep(tmp_path, grid, seeds=1, runs=runs))
    assert [run.label for run in sweep.runs] == [
        "SAC",
        "SAC lr 0.001 net [16, 16]",
        "SAC lr 0.001 net [32]",
        "SAC lr 3e-4 net [16, 16]",
        "SAC lr 3e-4 net [32]",
    ]


@pytest.mark.parametrize(
    "grid, message",
    [
        ({"values": {}}, "grid: values must be a non-empty mapping"),
        (
            {"values": {"agent.actor_lr": []}},
            "grid: values.agent.actor_lr must be a non-empty list",
        ),
        ({"values": {"agent.actor_lr": [1]}, "lable": "x"}, "grid: unknown key lable"),
        (
            {"values": {"agent.actor_lr": [1, 2]}, "label": "lr {agent.critic_lr}"},
            "grid: label 'lr {agent.critic_lr}' names {agent.critic_lr}, not a key of values",
        ),
        (
            {"values": {"agent.actor_lr": [1, 2]}, "label": "same"},
            "grid[1] (agent.actor_lr=2): label 'same' repeats grid[0]",
        ),
        (
            {"values": {"agent.actor_lr": [1, 2]}, "label": "lr/{agent.actor_lr}"},
            "grid[0] (agent.actor_lr=1): label 'lr/1' has the run directory lr_1 of runs[0]",
        ),
        ({"values": {"seed": [1, 2]}}, "override 'seed=1' would be replaced by the sweep's seed"),
        ({"values": {"agent.critic": ["mmeo"]}}, "grid[0] (agent.critic=mmeo): agent.critic:"),
    ],
)
def test_bad_grids_fail_before_anything_runs(tmp_path, grid, message):
    runs = [{"preset": "configs/synthetic.yaml", "label": "lr_1"}]
    grid = {"preset": "configs/synthetic.yaml", **grid}
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(_write_grid_sweep(tmp_path, grid, runs=runs))
    assert not (tmp_path / "runs").exists()


def test_dry_run_of_a_grid_lists_its_runs(tmp_path):
    values = {"agent.actor_lr": [0.001, 0.002]}
    grid = {"preset": "configs/synthetic.yaml", "values": values, "label": "lr{agent.actor_lr}"}
    result = _sweep_cli(str(_write_grid_sweep(tmp_path, grid, seeds=[7])), "--dry-run")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert _status_rows(result.stdout) == {
        ("lr0.001", "7"): ("new", str(tmp_path / "runs" / "lr0.001" / "seed7")),
        ("lr0.002", "7"): ("new", str(tmp_path / "runs" / "lr0.002" / "seed7")),
    }
    assert not (tmp_path / "runs").exists()


def test_the_cost_estimate_is_measured_per_method_and_scales_with_steps_and_runs(tmp_path):
    from mtrl.envs import episode_steps
    from mtrl.experiments.sweep import estimate_sweep, format_estimate

    out = tmp_path / "runs"
    estimate = estimate_sweep(load_sweep(_write_sweep(tmp_path, out, seeds=1)), window=30,
                              say=lambda line: None)  # fmt: skip
    assert set(estimate["rates"]) == {"SAC", "SAC+PCGrad"} and not out.exists()
    assert all(len(r) == 2 and min(r) > 0 for r in estimate["rates"].values())
    slow, fast = estimate["machine_hours"]
    assert slow >= fast > 0 and estimate["machine_hours_to_run"] == (slow, fast)

    # Ten times the steps and twice the seeds, at the same rates: the hours each run's steps take.
    path = _write_sweep(tmp_path, out, seeds=2)
    longer = ["total_steps=3000" if o.startswith("total_steps=") else o for o in TINY]
    path.write_text(path.read_text().replace(json.dumps(TINY), json.dumps(longer)))
    sweep = load_sweep(path)
    again = estimate_sweep(sweep, rates=estimate["rates"], say=lambda line: None)
    episodes = 3000 // 150 * 2 + 3  # every periodic evaluation's episodes and the final one's
    steps = 4 * (3000 + episodes * episode_steps("synthetic"))
    for row in again["rows"]:
        rates = estimate["rates"][row["label"]]
        assert row["hours_per_run"] == pytest.approx(
            (steps / min(rates) / 3600, steps / max(rates) / 3600)
        )
        assert row["runs"] == 2
    assert again["machine_hours"][0] == pytest.approx(
        2 * sum(row["hours_per_run"][0] for row in again["rows"])
    )
    assert again["machine_hours"][0] > 10 * slow  # 10x the training steps, 2x the runs
    text = format_estimate(again)
    assert "| SAC+PCGrad |" in text and "machine-hours for 4 runs" in text
