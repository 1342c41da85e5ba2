"""Our MT10 curve beside McLean et al. 2025's: MT-MH-SAC W = 256, the first 100k steps per task.

Trains ``configs/mt10/scaling/mtmhsac_w0256.yaml`` (McLean et al.'s setup, every value's source in
the file) for ``--steps`` steps per task on each seed, evaluating every ``--eval-every`` steps with
50 episodes per task (one per training goal), and writes our curve (IQM over seeds x tasks with a
95% stratified-bootstrap interval, the mean, and every seed) beside their published points as a
Markdown table, a JSON and a figure under ``--out``.

Resumable and incremental: each seed is an ordinary run directory under ``--out/runs/seed<k>``; a
finished seed is skipped, an unfinished one resumed from its checkpoint (the replay buffer is
checkpointed too, so a resumed seed learns as an uninterrupted one), and a new ``--seeds`` list adds
seeds to the ones already there. Each seed's wall-clock time is summed from its logged windows
(evaluations included, start-up and resumes' replay loading not), so it survives interruptions.

    nice python benchmarks/reference_mt10.py --seeds 0 1 2     # ~1.5-2 h per seed on 2 cores
    python benchmarks/reference_mt10.py --report-only           # table and figure from what exists
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from learning_runs import ROOT, add_arguments, read_curve, train

PRESET = ROOT / "configs" / "mt10" / "scaling" / "mtmhsac_w0256.yaml"
# McLean et al. 2025 (their Fig. and rainx0r/mtrl's width-scaling runs), MT10, W = 256: steps per
# task -> mean success over their 10 seeds.
TASKS = 10
PUBLISHED = {50_000: 0.19, 100_000: 0.28, 250_000: 0.54, 1_000_000: 0.70, 2_000_000: 0.74}


def train_seed(seed: int, args: argparse.Namespace) -> None:
    train(args.out / "runs" / f"seed{seed}", PRESET, seed, args)


def seed_curves(out: Path) -> dict[int, dict]:
    """Per seed: {step: [per-task success]} from its evaluations, and its wall-clock seconds."""
    curves = {}
    for run_dir in sorted((out / "runs").glob("seed*")):
        curve = read_curve(run_dir, TASKS)
        if curve is not None:
            curves[int(run_dir.name.removeprefix("seed"))] = curve
    return curves


def report(out: Path, reps: int) -> str:
    from mtrl.stats import aggregate_estimates

    curves = seed_curves(out)
    steps = sorted({step for curve in curves.values() for step in curve["points"]})
    rows, table = [], {}
    for step in steps:
        seeds = [s for s, curve in curves.items() if step in curve["points"]]
        tasks = sorted(curves[seeds[0]]["points"][step])
        scores = np.array([[curves[s]["points"][step][t] for t in tasks] for s in seeds])
        iqm, low, high = aggregate_estimates(scores, reps=reps, seed=0)["iqm"].as_tuple()
        table[step] = {
            "seeds": seeds,
            "iqm": iqm,
            "iqm_ci": [low, high],
            "mean": float(scores.mean()),
            "per_seed": {s: float(scores[i].mean()) for i, s in enumerate(seeds)},
            "published": PUBLISHED.get(step),
        }
        per_seed = ", ".join(f"{table[step]['per_seed'][s]:.2f}" for s in seeds)
        published = f"{PUBLISHED[step]:.2f}" if step in PUBLISHED else "-"
        interval = f"[{low:.2f}, {high:.2f}]" if len(seeds) > 1 else "(n/a: 1 seed)"
        rows.append(
            f"| {step // 1000}k | {len(seeds)} | {iqm:.2f} {interval} | "
            f"{scores.mean():.2f} | {per_seed} | {published} |"
        )
    timing = ", ".join(
        f"seed {s}: {c['seconds'] / 3600:.2f} h" + ("" if c["finished"] else " (unfinished)")
        for s, c in curves.items()
        if c["seconds"] is not None
    )
    text = "\n".join(
        [
            "| steps per task | seeds | IQM over seeds x tasks [95% CI] | mean | "
            "per seed (mean over tasks) | McLean et al. 2025 (W=256) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "IQM and interval: rliable's, over the seed x task matrix of success rates. McLean "
            "et al.'s points are mean success rates over the 10 tasks, aggregated over their 10 "
            "seeds: the mean column is the comparable quantity (rliable's IQM of 3 per-seed "
            "means is their mean).",
            "",
            f"Wall-clock per seed (2-core CPU, torch_threads=1): {timing or 'n/a'}.",
        ]
    )
    (out / "table.md").write_text(text + "\n")
    (out / "curve.json").write_text(json.dumps({str(k): v for k, v in table.items()}, indent=2))
    plot(out / "curve.png", table, curves)
    return text


def plot(path: Path, table: dict, curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(table)
    figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
    for curve in curves.values():
        xs = sorted(curve["points"])
        ys = [np.mean(list(curve["points"][x].values())) for x in xs]
        axis.plot(np.array(xs) / 1e3, ys, color="tab:blue", alpha=0.3, lw=1)
    x = np.array(steps) / 1e3
    mean = [table[s]["mean"] for s in steps]
    axis.plot(x, mean, color="tab:blue", lw=2, marker="o", label="mtrl: mean success (thin: seeds)")
    iqm = [table[s]["iqm"] for s in steps]
    axis.plot(x, iqm, color="tab:blue", lw=1, ls=":", label="mtrl: IQM over seeds x tasks, 95% CI")
    low = [table[s]["iqm_ci"][0] for s in steps]
    high = [table[s]["iqm_ci"][1] for s in steps]
    axis.fill_between(x, low, high, color="tab:blue", alpha=0.15)
    limit = max(steps) if steps else 100_000
    published = sorted((s, v) for s, v in PUBLISHED.items() if s <= max(limit, 100_000))
    axis.plot(
        [s / 1e3 for s, _ in published],
        [v for _, v in published],
        "s--",
        color="tab:red",
        label="McLean et al. 2025 (W=256)",
    )
    axis.set_xlabel("steps per task (thousands)")
    axis.set_ylabel("success rate")
    axis.set_ylim(0, 1)
    axis.set_title("MT10, MT-MH-SAC 3 x 256")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/reference_mt10", [0, 1, 2], 100_000, 25_000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for seed in args.seeds:
            train_seed(seed, args)
    print(report(args.out, args.bootstrap_reps))


if __name__ == "__main__":
    main()
