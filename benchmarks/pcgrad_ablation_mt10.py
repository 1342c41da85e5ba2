"""The PCGrad paper's MT10 ablation (Yu et al. 2020, its Table and Fig. 5) on real Meta-World v3:
SAC, multi-head SAC, SAC + PCGrad, PCGrad's direction only and magnitude only, SAC + GradNorm and
multi-head SAC + PCGrad, 100k steps per task, with the paper's gradient diagnostics.

Each arm is a preset of ``mt10/pcgrad_paper/`` (6 x 160 actor and critic, 128 transitions per task
per update), with ``agent.precision=auto`` (bf16 where the CPU has it: its learning is within seed
noise of fp32, docs/benchmarks.md) and the conflict, magnitude and curvature diagnostics every
``DIAGNOSTICS_EVERY`` updates. Evaluations every 25k steps per task and a final one, 50 episodes per
task (one per training goal: Meta-World's protocol).

Each (arm, seed) is a resumable run directory under ``--out/runs/<arm>/seed<k>`` (``learning_runs``);
as each run finishes or stops, a slim copy of it (``learning_runs.keep_run_files``: its config, run
record, evaluations and diagnostics, not its checkpoints) goes to ``--out/records/<arm>/seed<k>``,
committed, and ``mtrl report`` reads those copies as the runs themselves: the tables, intervals,
probabilities of improvement over SAC, curves, performance profile and the triad figure in
``--out/report``. Seeds run seed-major (seed 0 of every arm first), ``--jobs`` runs at a time, each
on ``--torch-threads`` threads.

    python benchmarks/pcgrad_ablation_mt10.py --calibrate          # rates and the grid's cost
    nice python benchmarks/pcgrad_ablation_mt10.py --seeds 0 1 2 3 --jobs 2
    python benchmarks/pcgrad_ablation_mt10.py --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from learning_runs import (
    MTRL,
    QUARTERS,
    ROOT,
    add_arguments,
    evaluation_count,
    finished_quarters,
    keep_run_files,
    train,
    wall_seconds,
)

PRESETS = ROOT / "mtrl" / "presets" / "mt10" / "pcgrad_paper"
ARMS = ("sac", "mh_sac", "pcgrad", "pcgrad_dir", "pcgrad_mag", "gradnorm", "mh_pcgrad")
TASKS = 10
# A diagnostic update (per-task pass, Gram matrix, three Hessian-vector products per role) costs
# ~10x a plain one; every 1000 updates that is ~1% of a run, and 100 points per run's curves.
DIAGNOSTICS_EVERY = 1000
COMMON = ["agent.precision=auto", f"agent.diagnostics_every={DIAGNOSTICS_EVERY}"]
# The figures' panels (``mtrl report --group``): seven arms on one axes were unreadable; each panel
# holds one comparison of the paper, with SAC in both.
GROUPS = {
    "the surgery's parts and GradNorm": ("sac", "pcgrad", "pcgrad_dir", "pcgrad_mag", "gradnorm"),
    "multi-head and PCGrad": ("sac", "mh_sac", "pcgrad", "mh_pcgrad"),
}


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> str:
    """Trains (or resumes, or skips) one run and keeps its slim copy; a line on how it ended."""
    run_dir = args.out / "runs" / arm / f"seed{seed}"
    copy = args.out / "records" / arm / f"seed{seed}"
    if not run_dir.exists() and (copy / "eval" / "final.json").is_file():
        return f"{arm} seed {seed}: finished elsewhere ({copy}), skipped"
    ended = "finished"
    try:
        train(run_dir, PRESETS / f"{arm}.yaml", seed, args, COMMON)
    except SystemExit as stop:  # train's one-line failure: the run resumes on the next call
        ended = str(stop)
    keep_run_files(run_dir, copy)
    return f"{arm} seed {seed}: {ended}"


def calibrate(args: argparse.Namespace) -> str:
    """Each arm's env steps/s over a short training window (after its warm-up and the compiling
    of its gradient passes), one fresh process each on ``--torch-threads`` threads, and the
    evaluation's env steps/s; from them the hours a run of ``--steps`` steps per task takes, and
    the grid's machine-hours for ``--seeds``. Written to ``--out/calibration.json``."""
    window, rates = 200, {}
    with tempfile.TemporaryDirectory() as directory:
        for arm in ARMS:
            run_dir = Path(directory) / arm
            command = [
                *MTRL,
                "train",
                "--config",
                str(PRESETS / f"{arm}.yaml"),
                *COMMON,
                f"total_steps={3 * window}",
                f"warmup_steps={window}",
                f"log_every={window}",
                f"replay_capacity_per_task={3 * window}",
                "eval_every=0",
                "checkpoint_every=0",
                "final_eval_episodes=2",
                f"torch_threads={args.torch_threads}",
                "progress=false",
                f"run_dir={run_dir}",
            ]
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            records = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
            rates[arm] = [r for r in records if r["kind"] == "train"][-1]["charts/env_steps_per_s"]
        rates["evaluation"] = evaluation_rate(Path(directory) / "sac", args)
    evaluations = args.steps // args.eval_every  # the last is the final one (50 episodes)
    eval_steps = evaluations * TASKS * 50 * 500
    hours = {
        arm: (args.steps * TASKS / rates[arm] + eval_steps / rates["evaluation"]) / 3600
        for arm in ARMS
    }
    runs = len(ARMS) * len(args.seeds)
    total = sum(hours.values()) * len(args.seeds)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "torch_threads": args.torch_threads,
        "env_steps_per_s": rates,
        "hours_per_run": hours,
        "seeds": args.seeds,
        "machine_hours": total,
    }
    (args.out / "calibration.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"{arm}: {rates[arm]:.0f} env steps/s, {hours[arm]:.2f} h a run" for arm in ARMS]
    lines.append(f"evaluation: {rates['evaluation']:.0f} env steps/s")
    lines.append(f"{runs} runs ({len(args.seeds)} seeds): {total:.1f} machine-hours")
    return "\n".join(lines)


def evaluation_rate(run_dir: Path, args: argparse.Namespace) -> float:
    """Env steps/s of Meta-World's evaluation of a trained run's policy (``mtrl eval``, 2
    episodes per task, timed around the call less a 0-episode call's start-up)."""

    def seconds(episodes: int) -> float:
        start = time.perf_counter()
        command = [*MTRL, "eval", str(run_dir), f"--episodes={episodes}", "--out", str(out)]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start

    out = run_dir.parent / "eval.json"
    startup, timed = seconds(1), seconds(5)
    return 4 * TASKS * 500 / (timed - startup)


def report(args: argparse.Namespace) -> str:
    """Refreshes the slim copies from the run directories here (not of runs another process is
    writing: a report beside the running grid leaves their copies as they are), then writes
    ``summary.md`` (read by the docs at build time): each arm's IQM and mean over seeds x tasks at
    every evaluated step with 95% stratified-bootstrap intervals and its runs' progress and hours,
    then, once runs have finished, ``mtrl report`` over the copies (``--out/report``: tables,
    probability of improvement, curves, profile, triad figure), the triad by quarter
    (``triad_table``) and each arm's probability of improvement over SAC."""
    from mtrl.analysis.report import make_report

    for arm in ARMS:
        for run_dir in sorted((args.out / "runs" / arm).glob("seed*")):
            keep_run_files(run_dir, args.out / "records" / arm / run_dir.name)
    lines = [
        f"Made by `python benchmarks/pcgrad_ablation_mt10.py --report-only` on "
        f"{time.strftime('%Y-%m-%d')} from the committed runs under "
        "`benchmarks/results/pcgrad_ablation_mt10/records`.",
        "",
        *step_table(args.out / "records", args.bootstrap_reps),
    ]
    finished = [
        p for p in (args.out / "records").glob("*/seed*") if (p / "eval/final.json").is_file()
    ]
    if finished:
        # The copies named relative to the repository in report/summary.json (committed), not
        # by the path of the machine that made it.
        records, here = Path(os.path.relpath(args.out / "records", ROOT)), Path.cwd()
        os.chdir(ROOT)
        try:
            made = make_report(
                [records], records.parent / "report", args.bootstrap_reps, groups=groups(args)
            )
        finally:
            os.chdir(here)
        versus = [
            i for i in made["improvement"] if i["method_y"] == "SAC" and i["method_x"] != "SAC"
        ]
        lines += ["", "Final evaluation (`mtrl report`, `report/table.md`):", ""]
        lines.append((args.out / "report" / "table.md").read_text().strip())
        lines += [
            "",
            "The triad in the first and the last quarter of the budget (first -> last; each"
            " finished run's median over its diagnostic updates there, then the mean over runs;"
            " conflict: the share of the 45 task pairs whose gradients conflict; curvature: the"
            " PCGrad paper's multi-task curvature of the critic's loss along its update):",
            "",
            *triad_table(args.out / "records", args.steps),
        ]
        claims = claims_table(made["improvement"])
        if claims:
            lines += [
                "",
                "The paper's comparisons (Yu et al. 2020's ablation; P(X > Y): the probability"
                " that a run of X beats a run of Y on a task, with its 95% stratified-bootstrap"
                " interval):",
                "",
                *claims,
            ]
        if versus:
            lines += [
                "",
                "| arm | P(arm > SAC) [95% CI] | tasks | seeds | seeds to separate |",
                "|---|---|---|---|---|",
                *(
                    f"| {i['method_x']} | {_probability(i)} | {i['tasks']} | {i['runs']} | "
                    f"{_seeds_to_separate(i['runs_to_separate'])} |"
                    for i in sorted(versus, key=lambda i: -i["probability"])
                ),
                "",
                "Seeds to separate: the seeds per arm at which the interval of P(arm > SAC) would"
                " reach 0.5 were the observed effect the true one (`mtrl.analysis.stats."
                "runs_to_separate`: the interval narrows as 1/sqrt(seeds)); at that many seeds a"
                " new grid separates about half the time, at twice as many about 80%.",
            ]
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    return text


def groups(args: argparse.Namespace) -> dict[str, list[str]]:
    """``GROUPS`` by the arms' labels, of the arms with an evaluated record (a partial grid
    reports what has run)."""
    from mtrl.config import build_config

    present = {
        arm
        for arm in ARMS
        if any(evaluation_count(copy) > 0 for copy in (args.out / "records" / arm).glob("seed*"))
    }
    label = {arm: build_config(PRESETS / f"{arm}.yaml", []).label for arm in present}
    return {name: [label[arm] for arm in arms if arm in present] for name, arms in GROUPS.items()}


CLAIMS = (  # (X, Y, what X > Y would support)
    ("SAC+PCGrad", "SAC", "PCGrad improves SAC"),
    ("SAC+PCGrad", "SAC+PCGrad (dir only)", "PCGrad needs its magnitude part"),
    ("SAC+PCGrad", "SAC+PCGrad (mag only)", "PCGrad needs its direction part"),
    ("SAC+PCGrad", "SAC+GradNorm", "PCGrad beats GradNorm"),
    ("MH-SAC+PCGrad", "MH-SAC", "PCGrad improves multi-head SAC too"),
)


def claims_table(improvement: list[dict]) -> list[str]:
    """A row per comparison of ``CLAIMS`` whose two arms have finished runs: P(X > Y) with its
    interval and what the interval decides (above 0.5: supported; below: contradicted; across:
    undecided at this many seeds)."""
    pairs = {(i["method_x"], i["method_y"]): i for i in improvement}
    rows = []
    for x, y, claim in CLAIMS:
        row = pairs.get((x, y))
        if row is None:
            continue
        if row["runs"] < 2:
            verdict = "undecided (one seed)"
        elif row["ci_low"] > 0.5:
            verdict = "supported"
        elif row["ci_high"] < 0.5:
            verdict = "contradicted"
        else:
            verdict = f"undecided at {row['runs']} seeds"
        rows.append(f"| {claim} | {x} > {y} | {_probability(row)} | {verdict} |")
    if not rows:
        return []
    return [
        "| the paper's claim | X > Y | P(X > Y) [95% CI] | the interval says |",
        "|---|---|---|---|",
        *rows,
    ]


def _probability(row: dict) -> str:
    """P(arm > SAC) with its interval; one seed has none (the bootstrap's collapses to the point)."""
    if row["runs"] < 2:
        return f"{row['probability']:.2f} (one seed: no interval)"
    return f"{row['probability']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def _seeds_to_separate(runs: float | None) -> str:
    if runs is None:
        return "n/a (one seed)"
    return "no effect" if runs == float("inf") else f"{math.ceil(runs)}"


def step_table(records: Path, reps: int) -> list[str]:
    """Per arm and evaluated step: seeds, IQM and mean success over the seed x task matrix with
    95% intervals, and per run its last step and hours (unfinished runs marked)."""
    from mtrl.analysis.stats import aggregate_estimates
    from mtrl.training.logging import read_metrics

    rows = [
        "| arm | steps per task | seeds | IQM [95% CI] | mean [95% CI] | runs: seed (last step, hours) |",
        "|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        runs = {}
        for copy in sorted((records / arm).glob("seed*")):
            metrics = read_metrics(copy)
            evals = {
                int(r["step"]): [
                    r[k]
                    for k in sorted(r)
                    if k.endswith("/success_rate") and k.startswith("tasks/")
                ]
                for r in metrics
                if r["kind"] in ("eval", "final_eval")
            }
            seconds = wall_seconds(metrics, TASKS)
            last = max((int(r["step"]) for r in metrics), default=0)
            runs[copy.name] = (evals, last, seconds, (copy / "eval" / "final.json").is_file())
        if not runs:
            continue
        progress = ", ".join(
            f"{name.removeprefix('seed')} ({last // 1000}k, {seconds / 3600:.2f} h"
            + ("" if done else ", running")
            + ")"
            for name, (_, last, seconds, done) in runs.items()
        )
        steps = sorted({step for evals, *_ in runs.values() for step in evals})
        for step in steps or [0]:
            scores = np.array([evals[step] for evals, *_ in runs.values() if step in evals])
            if not len(scores):
                rows.append(f"| {arm} | - | 0 | - | - | {progress} |")
                continue
            estimates = aggregate_estimates(scores, reps=reps, seed=0)
            cells = []
            for name in ("iqm", "mean"):
                point, low, high = estimates[name].as_tuple()
                cells.append(
                    f"{point:.2f} [{low:.2f}, {high:.2f}]" if len(scores) > 1 else f"{point:.2f}"
                )
            rows.append(
                f"| {arm} | {step // 1000}k | {len(scores)} | {cells[0]} | {cells[1]} | {progress} |"
            )
    return rows


TRIAD_COLUMNS = (  # (logged key, column, log10 of its magnitude)
    ("gradients/critic/conflict_fraction", "critic conflict", False),
    ("gradients/critic/cosine_mean", "critic cosine", False),
    ("gradients/critic/magnitude_similarity", "critic magnitude similarity", False),
    ("gradients/critic/curvature", "critic log10 curvature", True),
    ("gradients/actor/conflict_fraction", "actor conflict", False),
    ("gradients/actor/magnitude_similarity", "actor magnitude similarity", False),
)


def triad_table(records: Path, steps: int) -> list[str]:
    """Per arm, over its finished runs, the triad in the first and the last quarter of ``steps``
    (per task): each run's median over the diagnostic updates of the quarter, then the mean over
    the runs (what the docs' reading cites; the paper's account has conflict and curvature
    rising, and PCGrad is meant to lower what its arms act on)."""
    from mtrl.training.logging import read_metrics

    rows = [
        "| arm | seeds | " + " | ".join(column for _, column, _ in TRIAD_COLUMNS) + " |",
        "|---|---|" + "---|" * len(TRIAD_COLUMNS),
    ]
    for arm in ARMS:
        finished = [
            copy
            for copy in sorted((records / arm).glob("seed*"))
            if (copy / "eval" / "final.json").is_file()
        ]
        medians = []  # per run: {quarter: [median per column]}
        for copy in finished:
            quarters = dict(finished_quarters(read_metrics(copy), steps))
            medians.append(
                {
                    name: [
                        float(np.median(np.log10(np.abs(values)) if log else values))
                        for key, _, log in TRIAD_COLUMNS
                        for values in [np.array([r[key] for r in chosen if key in r])]
                    ]
                    for name, chosen in quarters.items()
                }
            )
        if not medians:
            continue
        first, last = (np.mean([m[q] for m in medians], axis=0) for q in QUARTERS)
        cells = [
            f"{a:.{1 if log else 2}f} -> {b:.{1 if log else 2}f}"
            for a, b, (_, _, log) in zip(first, last, TRIAD_COLUMNS, strict=True)
        ]
        rows.append(f"| {arm} | {len(medians)} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/pcgrad_ablation_mt10", [0, 1, 2, 3], 100_000, 25_000)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--calibrate", action="store_true", help="measure rates, no training")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.calibrate:
        print(calibrate(args))
        return
    if not args.report_only:
        queue = [(arm, seed) for seed in args.seeds for arm in args.arms]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(lambda job: run_arm(*job, args), queue):
                print(line, flush=True)
    try:
        print(report(args))
    except Exception as error:  # noqa: BLE001 (no finished run yet, say so and stop)
        sys.exit(f"report: {error}")


if __name__ == "__main__":
    main()
