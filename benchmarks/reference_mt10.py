"""Our MT10 curve beside McLean et al. 2025's: MT-MH-SAC W = 256, the first 100k steps per task.

Trains ``mt10/scaling/mtmhsac_w0256`` (McLean et al.'s setup, every value's source in
the file) for ``--steps`` steps per task on each seed, evaluating every ``--eval-every`` steps with
50 episodes per task (one per training goal), and writes our curve (IQM over seeds x tasks with a
95% stratified-bootstrap interval, the mean, and every seed) beside their published points as a
Markdown table, a JSON and a figure under ``--out``.

Two variants, each in its own folder ``--out/<variant>``: ``clip`` (the preset as it is: the
actor's log std clipped to [-20, 2], as McLean et al.'s code does) and ``tanh`` (log std mapped
into [-20, 2] through tanh, which starts a fresh actor at std e^-9 instead of 1: the preset before
2026-12-02, and the runs of seeds 0-2 made before that). The figure ``--out/curve.png`` shows both
beside the published points.

Resumable and incremental: each seed is an ordinary run directory under ``<variant>/runs/seed<k>``; a
finished seed is skipped, an unfinished one resumed from its checkpoint (the replay buffer is
checkpointed too, so a resumed seed learns as an uninterrupted one), and a new ``--seeds`` list adds
seeds to the ones already there. Each seed's wall-clock time is summed from its logged windows
(evaluations included, start-up and resumes' replay loading not), so it survives interruptions.

    nice python benchmarks/reference_mt10.py --seeds 0 1 2     # ~2-3 h per seed on 2 cores
    nice python benchmarks/reference_mt10.py --variant tanh --seeds 3
    python benchmarks/reference_mt10.py --report-only           # tables and figure from what exists
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from learning_runs import ROOT, add_arguments, record_curve, train

PRESET = ROOT / "mtrl" / "presets" / "mt10" / "scaling" / "mtmhsac_w0256.yaml"
# McLean et al. 2025 (their Fig. and rainx0r/mtrl's width-scaling runs), MT10, W = 256: steps per
# task -> mean success over their 10 seeds.
TASKS = 10
PUBLISHED = {50_000: 0.19, 100_000: 0.28, 250_000: 0.54, 1_000_000: 0.70, 2_000_000: 0.74}
VARIANTS = {  # name -> (overrides, what it is)
    "clip": ([], "log std clipped to [-20, 2], as McLean et al.'s code (the preset)"),
    "tanh": (["agent.log_std_bound=tanh"], "log std mapped into [-20, 2] through tanh"),
}


def train_seed(seed: int, variant: str, args: argparse.Namespace) -> None:
    out = args.out / variant
    record = out / "records" / f"seed{seed}.json"
    train(out / "runs" / f"seed{seed}", PRESET, seed, args, VARIANTS[variant][0], record)


def seed_curves(out: Path) -> dict[int, dict]:
    """Per seed (``learning_runs.record_curve``): its per-task success and mean at each evaluated
    step, and its wall-clock seconds, from its run directory or, when that is gone, its record."""
    names = {path.name for path in (out / "runs").glob("seed*")}
    names |= {path.stem for path in (out / "records").glob("seed*.json")}  # out: a variant's
    curves = {}
    for name in sorted(names, key=lambda name: int(name.removeprefix("seed"))):
        curve = record_curve(out / "runs" / name, out / "records" / f"{name}.json", TASKS)
        if curve is not None:
            curves[int(name.removeprefix("seed"))] = curve
    return curves


def report(out: Path, reps: int) -> str:
    """Each variant's table (``<variant>/table.md``, ``curve.json``) and the figure of both."""
    texts, drawn = [], []
    for variant, (_, what) in VARIANTS.items():
        curves = seed_curves(out / variant)
        if not curves:
            continue
        text, table = variant_report(out / variant, curves, reps)
        texts.append(f"{variant}: {what}\n\n{text}")
        drawn.append((variant, table, curves))
    plot(out / "curve.png", drawn)
    return "\n\n".join(texts)


def variant_report(out: Path, curves: dict[int, dict], reps: int) -> tuple[str, dict]:
    from mtrl.analysis.stats import aggregate_estimates

    steps = sorted({step for curve in curves.values() for step in curve["means"]})
    rows, table = [], {}
    for step in steps:
        seeds = [s for s, curve in curves.items() if step in curve["means"]]
        means = np.array([curves[s]["means"][step] for s in seeds])
        # The IQM needs every task's score: over the seeds whose per-task record survives.
        full = [s for s in seeds if step in curves[s]["points"]]
        table[step] = {
            "seeds": seeds,
            "mean": float(means.mean()),
            "per_seed": {s: float(m) for s, m in zip(seeds, means, strict=True)},
            "iqm_seeds": full,
            "published": PUBLISHED.get(step),
        }
        if full:
            tasks = sorted(curves[full[0]]["points"][step])
            scores = np.array([[curves[s]["points"][step][t] for t in tasks] for s in full])
            iqm, low, high = aggregate_estimates(scores, reps=reps, seed=0)["iqm"].as_tuple()
            table[step] |= {"iqm": iqm, "iqm_ci": [low, high]}
            interval = f"[{low:.2f}, {high:.2f}]" if len(full) > 1 else "(1 seed: no interval)"
            iqm_cell = f"{iqm:.2f} {interval}, seeds {', '.join(map(str, full))}"
        else:
            iqm_cell = "-"
        per_seed = ", ".join(f"{s}: {m:.2f}" for s, m in zip(seeds, means, strict=True))
        published = f"{PUBLISHED[step]:.2f}" if step in PUBLISHED else "-"
        rows.append(
            f"| {step // 1000}k | {len(seeds)} | {means.mean():.2f} | {per_seed} | "
            f"{iqm_cell} | {published} |"
        )
    timing = ", ".join(
        f"seed {s}: {c['seconds'] / 3600:.2f} h" + ("" if c["finished"] else " (unfinished)")
        for s, c in curves.items()
        if c["seconds"] is not None
    )
    text = "\n".join(
        [
            "| steps per task | seeds | mean success | per seed (mean over tasks) | "
            "IQM over seeds x tasks [95% CI] | McLean et al. 2025 (W=256) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "McLean et al.'s points are mean success rates over the 10 tasks, aggregated over "
            "their 10 seeds: the mean column is the comparable quantity. IQM and interval: "
            "rliable's, over the seed x task matrix of success rates of the seeds whose per-task "
            f"scores are recorded{_lost_scores_note(curves, table)}.",
            "",
            f"Wall-clock per seed (2-core CPU, torch_threads=1): {timing or 'n/a'}.",
        ]
    )
    (out / "table.md").write_text(text + "\n")
    (out / "curve.json").write_text(json.dumps({str(k): v for k, v in table.items()}, indent=2))
    return text, table


def _lost_scores_note(curves: dict[int, dict], table: dict[int, dict]) -> str:
    """Names the seeds that miss per-task scores somewhere: the first seeds of the tanh variant
    ran before per-seed records existed, and their machine kept only their per-seed means."""
    lacking = sorted(
        {s for row in table.values() for s in row["seeds"]}
        - {
            s
            for s in curves
            if all(s in row["iqm_seeds"] for row in table.values() if s in row["seeds"])
        }
    )
    if not lacking:
        return " (every seed's)"
    named = ", ".join(map(str, lacking))
    return f" (seeds {named} lack some: they ran before per-seed records kept per-task scores)"


def plot(path: Path, drawn: list[tuple[str, dict, dict]]) -> None:
    """Each variant's mean curve (thin: its seeds; dotted: the IQM with its band) and the
    published points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    limit = 100_000
    for (variant, table, curves), color in zip(drawn, ("tab:blue", "tab:green"), strict=False):
        steps = sorted(table)
        limit = max([limit, *steps])
        for curve in curves.values():
            xs = sorted(curve["means"])
            axis.plot(np.array(xs) / 1e3, [curve["means"][x] for x in xs], color=color, alpha=0.3)
        mean = [table[s]["mean"] for s in steps]
        label = f"mtrl, log std {variant}: mean success"
        axis.plot(np.array(steps) / 1e3, mean, color=color, lw=2, marker="o", label=label)
        with_iqm = [s for s in steps if "iqm" in table[s]]
        x_iqm = np.array(with_iqm) / 1e3
        axis.plot(x_iqm, [table[s]["iqm"] for s in with_iqm], color=color, lw=1, ls=":")
        low = [table[s]["iqm_ci"][0] for s in with_iqm]
        high = [table[s]["iqm_ci"][1] for s in with_iqm]
        axis.fill_between(x_iqm, low, high, color=color, alpha=0.12)
    published = sorted((s, v) for s, v in PUBLISHED.items() if s <= limit)
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
    axis.set_title("MT10, MT-MH-SAC 3 x 256 (dotted: IQM with 95% CI; thin: seeds)")
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/reference_mt10", [0, 1, 2], 100_000, 25_000)
    parser.add_argument("--variant", choices=list(VARIANTS), default="clip")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for seed in args.seeds:
            train_seed(seed, args.variant, args)
            report(args.out, args.bootstrap_reps)  # the record lands as each seed finishes
    print(report(args.out, args.bootstrap_reps))


if __name__ == "__main__":
    main()
