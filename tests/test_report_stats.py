"""`mtrl report`'s statistics, protocol checks and provenance, on fabricated run directories."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtrl.analysis import stats
from mtrl.analysis.report import UNKNOWN_GOAL_SCHEME, make_report
from mtrl.cli import main
from mtrl.config import ConfigError, build_config, save_config

REPO = Path(__file__).resolve().parent.parent
TASKS = [f"point-{i}" for i in range(6)]
STEPS = (500, 1000, 1500)
REPS = 500


def _protocol(seed: int, **changes) -> dict:
    return {
        "env": "synthetic:6",
        "reward_version": None,  # mtrl.training.run records none off Meta-World
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
        seeds = min(len(tables["SAC"]), len(tables["SAC+PCGrad"]))
        assert int(r["runs"]) == seeds
        assert float(r["runs_to_separate"]) == pytest.approx(stats.runs_to_separate(e, seeds))

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
        assert "Protocol (synthetic:6): env synthetic:6, max_episode_steps 50" in text
        assert "None" not in text  # no reward version off Meta-World: no field
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
        "reward_version": None,  # as mtrl.training.run records it off Meta-World
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


# --------------------------------------------------------------------- corrupt run directories
def _edit_final_record(run_dir: Path, **values) -> None:
    """The final_eval record (the metrics' last line) with ``values`` changed."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[-1] = json.dumps({**json.loads(lines[-1]), **values})
    path.write_text("\n".join(lines) + "\n")


def _final_json_only(run_dir: Path, text: str) -> None:
    """No final_eval record (a torn last line), eval/final.json holding ``text``."""
    path = run_dir / "metrics.jsonl"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    (run_dir / "eval").mkdir()
    (run_dir / "eval" / "final.json").write_text(text)


def _final_tasks(**rates) -> str:
    tasks = {t: {"success_rate": rates.get(t.replace("-", "_"), 0.5)} for t in TASKS}
    return json.dumps({"step": STEPS[-1], "tasks": tasks})


def _metrics_line(run_dir: Path, text: str) -> None:
    """``text`` as the metrics' first line (not a torn last one)."""
    path = run_dir / "metrics.jsonl"
    path.write_text(text + "\n" + path.read_text())


def _write(name: str, content: str | bytes):
    def corrupt(run_dir: Path) -> None:
        path = run_dir / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)

    return corrupt


GARBAGE = bytes(range(256)) * 4
CORRUPT_RUNS = {
    "final success 7.0": (
        lambda d: _edit_final_record(d, **{"tasks/point-1/success_rate": 7.0}),
        "metrics.jsonl",
        "tasks/point-1/success_rate 7.0 is not a success rate in [0, 1]",
    ),
    "final success NaN": (
        lambda d: _edit_final_record(d, **{"tasks/point-0/success_rate": float("nan")}),
        "metrics.jsonl",
        "tasks/point-0/success_rate nan is not a success rate",
    ),
    "final success -0.5": (
        lambda d: _edit_final_record(d, **{"tasks/point-0/success_rate": -0.5}),
        "metrics.jsonl",
        "-0.5 is not a success rate",
    ),
    "final success a bool": (
        lambda d: _edit_final_record(d, **{"tasks/point-0/success_rate": True}),
        "metrics.jsonl",
        "True is not a success rate",
    ),
    "eval mean a string": (
        lambda d: _metrics_line(
            d, json.dumps({"step": 100, "kind": "eval", "eval/mean_success_rate": "high"})
        ),
        "metrics.jsonl",
        "line 1: eval/mean_success_rate 'high' is not a success rate",
    ),
    "record without a step": (
        lambda d: _metrics_line(d, json.dumps({"kind": "eval"})),
        "metrics.jsonl",
        "line 1: a record without",
    ),
    "record a list": (
        lambda d: _metrics_line(d, "[1, 2, 3]"),
        "metrics.jsonl",
        "line 1: not a JSON object",
    ),
    "record garbage mid-file": (
        lambda d: _metrics_line(d, "{not json"),
        "metrics.jsonl",
        "line 1: not a JSON object",
    ),
    "train timing a string": (
        lambda d: _metrics_line(
            d,
            json.dumps(
                {
                    "step": 10,
                    "kind": "train",
                    "charts/updates_per_s": "fast",
                    "charts/time_update_fraction": 0.5,
                }
            ),
        ),
        "metrics.jsonl",
        "line 1: charts/updates_per_s 'fast' is not a number",
    ),
    "gradient statistic a list": (
        lambda d: _metrics_line(
            d,
            json.dumps({"step": 10, "kind": "train", "gradients/critic/conflict_fraction": [1]}),
        ),
        "metrics.jsonl",
        "line 1: gradients/critic/conflict_fraction [1] is not a number",
    ),
    "metrics binary garbage": (_write("metrics.jsonl", GARBAGE), "metrics.jsonl", "not UTF-8"),
    "metrics a directory": (
        lambda d: ((d / "metrics.jsonl").unlink(), (d / "metrics.jsonl").mkdir()),
        "metrics.jsonl",
        "cannot read",
    ),
    "final.json success 7.0": (
        lambda d: _final_json_only(d, _final_tasks(point_2=7.0)),
        "eval/final.json",
        "tasks.point-2.success_rate 7.0 is not a success rate in [0, 1]",
    ),
    "final.json success NaN": (
        lambda d: _final_json_only(d, _final_tasks(point_2=float("nan"))),
        "eval/final.json",
        "tasks.point-2.success_rate nan is not a success rate",
    ),
    "final.json truncated": (
        lambda d: _final_json_only(d, _final_tasks()[:40]),
        "eval/final.json",
        "not valid JSON",
    ),
    "final.json garbage": (
        lambda d: (_final_json_only(d, ""), (d / "eval" / "final.json").write_bytes(GARBAGE)),
        "eval/final.json",
        "not valid JSON",
    ),
    "final.json a list": (
        lambda d: _final_json_only(d, "[1, 2]"),
        "eval/final.json",
        "not a JSON object",
    ),
    "final.json task a number": (
        lambda d: _final_json_only(d, json.dumps({"tasks": {"point-0": 0.5}})),
        "eval/final.json",
        "tasks.point-0 is not an object with a success_rate",
    ),
    "final.json tasks a list": (
        lambda d: _final_json_only(d, json.dumps({"tasks": [0.5]})),
        "eval/final.json",
        "tasks is not an object of tasks",
    ),
    "final.json step a string": (
        lambda d: _final_json_only(d, json.dumps({**json.loads(_final_tasks()), "step": "x"})),
        "eval/final.json",
        "step 'x' is not a step",
    ),
    "config.yaml empty": (_write("config.yaml", ""), "config.yaml", "empty"),
    "config.yaml not YAML": (_write("config.yaml", "env: {name: [\n"), "config.yaml", "YAML"),
    "config.yaml a list": (_write("config.yaml", "- 1\n- 2\n"), "config.yaml", "mapping"),
    "config.yaml seed a word": (
        _write("config.yaml", "env: {name: 'synthetic:6'}\nseed: abc\n"),
        "config.yaml",
        "seed: expected an integer, got 'abc'",
    ),
    "config.yaml agent a number": (
        _write("config.yaml", "env: {name: 'synthetic:6'}\nagent: 5\n"),
        "config.yaml",
        "agent: expected a mapping",
    ),
    "config.yaml unknown key": (
        _write("config.yaml", "env: {name: 'synthetic:6'}\nlabell: SAC\n"),
        "config.yaml",
        "unknown config key 'labell'",
    ),
    "config.yaml binary garbage": (_write("config.yaml", GARBAGE), "config.yaml", "not UTF-8"),
    "run.json a list": (_write("run.json", "[1, 2]"), "run.json", "not a JSON object"),
    "run.json truncated": (_write("run.json", '{"status": "fini'), "run.json", "not valid JSON"),
    "run.json protocol a string": (
        _write("run.json", json.dumps({"protocol": "MT10"})),
        "run.json",
        "protocol is not an object",
    ),
    "run.json protocol episode length a word": (
        _write("run.json", json.dumps({"protocol": _protocol(0, max_episode_steps="long")})),
        "run.json",
        "protocol.max_episode_steps 'long' is not a step count",
    ),
    "run.json protocol env a mapping": (
        _write("run.json", json.dumps({"protocol": _protocol(0, env={"a": 1})})),
        "run.json",
        "protocol.env {'a': 1} is not a plain value",
    ),
    "run.json resumed_at a number": (
        _write("run.json", json.dumps({"resumed_at": 5})),
        "run.json",
        "resumed_at 5 is not a list",
    ),
    "run.json parameter counts a list": (
        _write("run.json", json.dumps({"parameter_counts": [1, 2]})),
        "run.json",
        "parameter_counts [1, 2] is not an object",
    ),
}


@pytest.mark.parametrize("case", list(CORRUPT_RUNS))
def test_a_corrupt_run_is_one_warning_naming_its_file_and_is_left_out(tmp_path, capsys, case):
    corrupt, name, why = CORRUPT_RUNS[case]
    root = tmp_path / "runs"
    for seed in (0, 1):
        _fabricate(root, "SAC", seed, np.full(len(TASKS), 0.25 * (seed + 1)), _protocol(seed))
    bad = _fabricate(root, "SAC", 2, np.full(len(TASKS), 1.0), _protocol(2))
    corrupt(bad)
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--bootstrap-reps", "20"]) == 0
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert warning.startswith(f"mtrl: warning: run left out of the report: {bad / name}: "), warning
    assert why in warning, warning
    (summary,) = json.loads((out / "summary.json").read_text())["methods"]
    assert summary["per_seed"] == {"0": 0.25, "1": 0.5}

    # Alone, nothing is left to report: one line, exit code 2, no files.
    capsys.readouterr()
    alone = ["report", str(bad), "--out", str(tmp_path / "alone"), "--bootstrap-reps", "20"]
    assert main(alone) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("mtrl: error: no run to report: ") and why in error, error
    assert not (tmp_path / "alone").exists()


# ---------------------------------------------------------------------------------- figures
@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures the plot functions close, kept open to look into."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kept: list = []
    close = plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for figure in kept:
        close(figure)


def _panels(figure) -> list[list]:
    """The lines of each panel that has any."""
    return [ax.get_lines() for ax in figure.axes if ax.get_lines()]


def _assert_small_distinct_panels(panels: list[list], methods: int, per_panel: int = 8) -> None:
    from matplotlib.colors import to_hex

    assert sum(len(lines) for lines in panels) == methods
    for lines in panels:
        assert len(lines) <= per_panel
        colors = [to_hex(line.get_color()) for line in lines]
        assert len(set(colors)) == len(colors), colors


def test_many_methods_are_split_into_panels_of_distinct_colours(tmp_path, figures):
    from mtrl.analysis.figures import plot_curves, plot_gradient_statistics

    rng = np.random.default_rng(0)
    labels = [f"method {k}" for k in range(33)]

    def curve() -> list[tuple[int, float]]:
        return [(step, float(rng.uniform())) for step in STEPS]

    curves = {
        label: [([(s, {"t": v}) for s, v in curve()], curve()) for _ in range(2)]
        for label in labels
    }
    plot_curves(curves, tmp_path / "curves.png", "curves", reps=10, seed=0)
    (figure,) = figures
    panels = _panels(figure)
    assert len(panels) == 5  # ceil(33 / 8)
    _assert_small_distinct_panels(panels, 33)

    keys = ["gradients/critic/conflict_fraction", "gradients/actor/curvature"]
    series = {key: {label: [curve(), curve()] for label in labels} for key in keys}
    assert plot_gradient_statistics(series, tmp_path / "triad.png", "triad", reps=10, seed=0)
    panels = _panels(figures[-1])
    assert len(panels) == 2 * 5  # every statistic for each group of methods
    _assert_small_distinct_panels(panels[::2], 33)
    _assert_small_distinct_panels(panels[1::2], 33)


@pytest.mark.parametrize("methods", [1, 3, 33])
def test_the_heatmap_numbers_and_colour_bar_label_are_legible_and_inside(
    tmp_path, figures, methods
):
    from mtrl.analysis.figures import plot_heatmap

    summaries = [
        {"method": f"method {k}", "per_task": {t: 0.5 for t in TASKS}} for k in range(methods)
    ]
    plot_heatmap(summaries, tmp_path / "heatmap.png", "per task")
    (figure,) = figures
    figure.canvas.draw()
    heatmap, bar = figure.axes
    assert min(text.get_fontsize() for text in heatmap.texts) >= 8
    label = bar.yaxis.label
    assert label.get_text() and label.get_fontsize() >= 9
    inside = figure.bbox
    extent = label.get_window_extent()
    assert inside.y0 <= extent.y0 and extent.y1 <= inside.y1 and extent.x1 <= inside.x1, extent


def test_the_improvement_matrix_prints_no_interval_for_a_pair_with_a_one_seed_method(
    runs, tmp_path, figures
):
    root, _ = runs
    five = make_report([root], tmp_path / "five", bootstrap_reps=50)
    one = make_report(
        [root / "SAC", root / "SAC_PCGrad" / "seed0"], tmp_path / "one", bootstrap_reps=50
    )
    cells = []
    for figure in figures:
        (ax, *_) = figure.axes
        if "P(X > Y)" in ax.get_title():
            cells.append([text.get_text() for text in ax.texts])
    assert len(cells) == 2 and all(len(texts) == 2 for texts in cells)
    assert all("[" in text and "seed" not in text for text in cells[0]), cells
    assert all(text.endswith("\n(1 seed)") for text in cells[1]), cells
    # the CSV and JSON keep the interval that resamples SAC's seeds alone
    assert {row["runs"] for row in five["improvement"]} == {5}
    assert {row["runs"] for row in one["improvement"]} == {1}
    assert any(row["ci_low"] < row["ci_high"] for row in one["improvement"])


# ------------------------------------------------------------- --methods and unfinished runs
def test_methods_picks_the_rows_in_its_order_and_an_unknown_one_is_one_line(tmp_path, capsys):
    root = tmp_path / "runs"
    for k, label in enumerate(("MH-SAC", "SAC", "SAC+PCGrad")):
        _fabricate(root, label, 0, np.full(len(TASKS), 0.2 * (k + 1)), _protocol(0))
    out = tmp_path / "report"
    args = ["report", str(root), "--out", str(out), "--bootstrap-reps", "50"]
    assert main([*args, "--methods", "SAC+PCGrad", "SAC"]) == 0
    rows = [line for line in (out / "table.md").read_text().splitlines() if "synthetic:6 |" in line]
    assert [row.split(" | ")[1] for row in rows] == ["SAC+PCGrad", "SAC"]
    summary = json.loads((out / "summary.json").read_text())
    assert {run["method"] for run in summary["runs"]} == {"SAC", "SAC+PCGrad"}

    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "other"), "--methods", "SAC", "PPO"]) == 2
    (error,) = capsys.readouterr().err.strip().splitlines()
    assert error == (
        "mtrl: error: --methods: no runs of 'PPO'; the runs' methods are 'MH-SAC', 'SAC', "
        "'SAC+PCGrad'"
    )
    assert not (tmp_path / "other").exists()


def _unfinish(run_dir: Path, status: str = "running") -> None:
    """The run as it is before its final evaluation: no final_eval record, run.json's status."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "metrics.jsonl").write_text(
        "".join(line for line in lines if "final_eval" not in line)
    )
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(info | {"status": status}))


def test_unfinished_runs_are_scored_by_their_last_evaluation_and_marked(tmp_path, figures):
    root = tmp_path / "runs"
    final = np.linspace(0.2, 0.8, len(TASKS))
    for seed in (0, 1):
        _unfinish(_fabricate(root, "SAC", seed, final, _protocol(seed)))
    _fabricate(root, "SAC+PCGrad", 0, final, _protocol(0))
    stopped = _fabricate(root, "MH-SAC", 0, final, _protocol(0))
    _unfinish(stopped, "interrupted")
    (stopped / "metrics.jsonl").write_text(  # stopped before its second evaluation
        (stopped / "metrics.jsonl").read_text().splitlines(keepends=True)[0]
    )
    report = make_report([root], tmp_path / "report", bootstrap_reps=50)
    scores = {s["method"]: s["mean"] for s in report["summaries"]}
    assert scores == {
        "SAC (running, at 1k steps)": pytest.approx(final.mean() * 2 / 3),  # the step-1000 eval
        "MH-SAC (interrupted, at 500 steps)": pytest.approx(final.mean() / 3),
        "SAC+PCGrad": pytest.approx(final.mean()),
    }
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| SAC (running, at 1k steps) |" in table and "| SAC+PCGrad |" in table
    # The running method's curve ends in an open marker at its last evaluation; the finished one's
    # does not.
    curves = next(f for f in figures if f.axes[0].get_ylabel().startswith("IQM success"))
    ends = [line for line in curves.axes[0].get_lines() if line.get_marker() == "o"]
    assert len(ends) == 2 and sorted(float(line.get_xdata()[0]) for line in ends) == [500, 1000]


def test_a_report_of_only_running_runs_is_drawn_and_one_without_evaluations_is_refused(
    tmp_path, capsys
):
    root = tmp_path / "runs"
    run_dir = _fabricate(root, "SAC", 0, np.full(len(TASKS), 0.5), _protocol(0))
    _unfinish(run_dir)
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--bootstrap-reps", "50"]) == 0
    assert "SAC (running, at 1k steps)" in (tmp_path / "r" / "table.md").read_text()
    (run_dir / "metrics.jsonl").write_text("")
    capsys.readouterr()
    assert main(["report", str(root), "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == "mtrl: error: none of the runs has an evaluation yet"


def test_the_plasticity_panel_draws_iqm_over_seeds_per_method(tmp_path, figures):
    root = tmp_path / "runs"
    fractions = {"SAC": (0.1, 0.2, 0.3, 0.9), "SAC+PCGrad": (0.05, 0.05, 0.05, 0.05)}
    for label, values in fractions.items():
        for seed, value in enumerate(values):
            run_dir = _fabricate(root, label, seed, np.full(len(TASKS), 0.5), _protocol(seed))
            records = [
                {"step": step, "kind": "train"}
                | {f"plasticity/{role}/dormant_fraction": value * k for role in ("critic", "actor")}
                | {f"plasticity/{role}/effective_rank": 10.0 * k for role in ("critic", "actor")}
                for k, step in enumerate(STEPS, 1)
            ]
            with (run_dir / "metrics.jsonl").open("a") as file:
                file.writelines(json.dumps(r) + "\n" for r in records)
    report = make_report([root], tmp_path / "report", bootstrap_reps=50)
    assert tmp_path / "report" / "plasticity_synthetic_6.png" in report["files"]
    figure = next(f for f in figures if f._suptitle and "plasticity" in f._suptitle.get_text())
    panels = {ax.get_ylabel(): ax for ax in figure.axes if ax.get_lines()}
    assert set(panels) == {
        f"{role} {name}"
        for role in ("critic", "actor")
        for name in ("dormant fraction", "effective rank")
    }
    lines = {line.get_label(): line for line in panels["critic dormant fraction"].get_lines()}
    # IQM of 4 seeds: the mean of the middle two (0.2, 0.3 at the first step), not 0.375.
    assert lines["SAC"].get_ydata()[0] == pytest.approx(0.25)
    assert list(lines["SAC+PCGrad"].get_ydata()) == pytest.approx([0.05, 0.1, 0.15])


def _timed(run_dir: Path, label: str, seconds: float, precision: str, cpu: str | None) -> None:
    """Gives a fabricated run logged update windows of ``seconds`` per update on a machine."""
    overrides = ["env.name=synthetic:6", f"label={label}", "total_steps=1500"]
    if label != "SAC":
        overrides.append("agent.critic_grad=pcgrad")
    seed = int(run_dir.name.removeprefix("seed"))
    save_config(build_config(None, [*overrides, f"seed={seed}"]), run_dir / "config.yaml")
    windows = [
        {"step": 100 * k, "kind": "train", "charts/updates_per_s": 50.0 / (seconds * 100)}
        | {"charts/time_update_fraction": 0.5}
        for k in (1, 2, 3)
    ]
    with (run_dir / "metrics.jsonl").open("a") as file:
        file.writelines(json.dumps(w) + "\n" for w in windows)
    info = json.loads((run_dir / "run.json").read_text())
    info |= {"device": "cpu", "precision": precision}
    if cpu is not None:  # a name, or (name, matmul instruction sets)
        name, isa = cpu if isinstance(cpu, tuple) else (cpu, None)
        hardware = {"cpu": name, "cpu_isa": isa, "logical_cpus": 2, "gpu": None}
        info["provenance"]["hardware"] = hardware
    (run_dir / "run.json").write_text(json.dumps(info))


def test_update_cost_compares_only_runs_on_the_same_hardware(tmp_path):
    """The cost column divides a method's update time by SAC's measured on the same device,
    precision and processor: a ratio across machines is n/a, never a number about the hardware.
    One name can cover processors with different instruction sets ("AMD EPYC" on two VMs, one
    with AVX2 only, one with AVX-512): those are other hardware too."""
    scores = _scores(3, 0.5)
    avx2, avx512 = ["avx2"], ["avx2", "avx512f", "avx512_bf16"]
    machines = {  # label -> per seed: (seconds per update, precision, cpu)
        "SAC": [(0.01, "bf16", "Xeon AMX"), (0.03, "fp32", ("EPYC", avx2))],
        "SAC+PCGrad": [(0.02, "bf16", "Xeon AMX"), (0.06, "fp32", ("EPYC", avx2))],
        "SAC+PCGrad old": [(0.015, "bf16", None)],  # made before the processor was recorded
        "SAC+PCGrad other": [(0.05, "fp32", "Graviton")],
        "SAC+PCGrad avx512": [(0.02, "fp32", ("EPYC", avx512))],
    }
    for label, runs in machines.items():
        for seed, (seconds, precision, cpu) in enumerate(runs):
            run_dir = _fabricate(tmp_path / "runs", label, seed, scores[seed], _protocol(seed))
            _timed(run_dir, label, seconds, precision, cpu)
    report = make_report([tmp_path / "runs"], tmp_path / "report", bootstrap_reps=REPS)
    cost = {s["method"]: s["update_cost"] for s in report["summaries"]}
    assert cost["SAC"] == pytest.approx(1.0)
    assert cost["SAC+PCGrad"] == pytest.approx(2.0)  # each seed against SAC on its own machine
    assert cost["SAC+PCGrad old"] == pytest.approx(1.5)  # matches the bf16 SAC run
    assert cost["SAC+PCGrad other"] is None
    assert cost["SAC+PCGrad avx512"] is None  # the same name, other instruction sets
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| SAC+PCGrad other |" in table
    other = next(line for line in table.splitlines() if "| SAC+PCGrad other |" in line)
    assert other.endswith("| n/a (other hardware) |")


# ------------------------------------------------------------------------------- --group panels
def _log_triad(run_dir: Path, offset: float, every: int = 25) -> np.ndarray:
    """Logs the triad's six statistics every ``every`` steps to STEPS[-1] (value: step / 1000 +
    ``offset``); returns the steps."""
    from mtrl.analysis.report import TRIAD_KEYS

    steps = np.arange(every, STEPS[-1] + 1, every)
    with (run_dir / "metrics.jsonl").open("a") as file:
        for step in steps:
            record = {"step": int(step), "kind": "train"}
            file.write(json.dumps(record | dict.fromkeys(TRIAD_KEYS, step / 1000 + offset)) + "\n")
    return steps


def test_groups_draw_a_panel_each_and_the_statistics_as_window_means(tmp_path, figures):
    from matplotlib.colors import to_hex

    from mtrl.analysis.figures import STATISTIC_WINDOWS

    root = tmp_path / "runs"
    labels = ("SAC", "MH-SAC", "SAC+PCGrad", "SAC+GradNorm")
    for label in labels:
        for seed in (0, 1):
            run_dir = _fabricate(root, label, seed, np.full(len(TASKS), 0.5), _protocol(seed))
            steps = _log_triad(run_dir, offset=seed)
    groups = {"architecture": ["SAC", "MH-SAC"], "surgery": ["SAC", "SAC+PCGrad"]}
    make_report([root], tmp_path / "report", bootstrap_reps=50, groups=groups)

    curves = next(f for f in figures if f.axes[0].get_ylabel().startswith("IQM success"))
    titles = [ax.get_title(loc="left") for ax in curves.axes]
    assert titles == ["architecture", "surgery", "other methods"]
    drawn = [{line.get_label(): line for line in ax.get_lines()} for ax in curves.axes]
    assert [sorted(panel) for panel in drawn] == [
        ["MH-SAC (n=2)", "SAC (n=2)"],
        ["SAC (n=2)", "SAC+PCGrad (n=2)"],
        ["SAC+GradNorm (n=2)"],
    ]
    sac = {to_hex(panel["SAC (n=2)"].get_color()) for panel in drawn[:2]}
    assert len(sac) == 1  # the reference looks the same in both panels
    assert sac.isdisjoint({to_hex(drawn[0]["MH-SAC (n=2)"].get_color())})

    triad = next(f for f in figures if f._suptitle and "tragic triad" in f._suptitle.get_text())
    width = STEPS[-1] / STATISTIC_WINDOWS
    assert f"windows of {width:,.0f} steps" in triad._suptitle.get_text()
    axes = [ax for ax in triad.axes if ax.get_lines()]
    assert len(axes) == 3 * 6  # the six statistics once per panel
    assert [ax.get_title(loc="left") for ax in axes[::6]] == list(titles)
    (sac_line,) = [line for line in axes[0].get_lines() if line.get_label() == "SAC"]
    # Each window's mean over the seeds (offsets 0 and 1) of each run's window mean.
    window = np.clip(
        np.searchsorted(np.linspace(0, STEPS[-1], STATISTIC_WINDOWS + 1), steps) - 1, 0, None
    )
    expected = [steps[window == k].mean() / 1000 + 0.5 for k in range(STATISTIC_WINDOWS)]
    assert len(sac_line.get_ydata()) == STATISTIC_WINDOWS
    assert list(sac_line.get_ydata()) == pytest.approx(expected)
    assert {ax.get_yscale() for ax in axes} == {"linear"}  # within two decades


def test_a_statistic_spanning_decades_gets_a_log_axis(tmp_path, figures):
    from mtrl.analysis.figures import plot_gradient_statistics

    steps = range(100, 3001, 100)
    series = {  # curvature growing 1000-fold; a fraction; a curvature that changes sign
        "gradients/critic/curvature": {"SAC": [[(s, 10 ** (s / 1000)) for s in steps]]},
        "gradients/critic/conflict_fraction": {"SAC": [[(s, s / 3000) for s in steps]]},
        "gradients/actor/curvature": {"SAC": [[(s, s - 1000.0) for s in steps]]},
    }
    assert plot_gradient_statistics(series, tmp_path / "triad.png", "triad", reps=10, seed=0)
    scales = {ax.get_ylabel(): ax.get_yscale() for ax in figures[-1].axes if ax.get_lines()}
    assert scales == {
        "critic curvature": "log",
        "critic conflict fraction": "linear",
        "actor curvature": "linear",
    }


def test_a_group_naming_an_unknown_method_or_none_is_one_line_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "runs"
    for label in ("SAC", "SAC+PCGrad"):
        _fabricate(root, label, 0, np.full(len(TASKS), 0.5), _protocol(0))
    out = tmp_path / "report"
    args = ["report", str(root), "--out", str(out), "--bootstrap-reps", "50"]
    cases = {
        ("--group", "surgery", "SAC", "SAC+PCgrad"): "mtrl: error: --group 'surgery': no runs of "
        "'SAC+PCgrad'; the reported methods are 'SAC', 'SAC+PCGrad'",
        ("--group", "surgery"): "mtrl: error: --group 'surgery' names no methods: "
        "--group NAME LABEL [LABEL ...]",
        ("--group", "a", "SAC", "--group", "a", "SAC+PCGrad"): "mtrl: error: --group 'a' is given "
        "twice",
        ("--methods", "SAC", "--group", "b", "SAC+PCGrad"): "mtrl: error: --group 'b': no runs of "
        "'SAC+PCGrad'; the reported methods are 'SAC'",
    }
    for options, message in cases.items():
        capsys.readouterr()
        assert main([*args, *options]) == 2
        assert capsys.readouterr().err.strip() == message
        assert not out.exists()
    assert main([*args, "--group", "surgery", "SAC+PCGrad", "SAC"]) == 0
