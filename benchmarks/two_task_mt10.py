"""The PCGrad paper's two-task view (its Fig. 5 account, the "tragic triad") on real Meta-World: the
pair of MT10 tasks whose critic gradients conflict most often under SAC, trained as a two-task
problem with SAC and with SAC + PCGrad, and each task's success beside the triad over training.

**Choosing the pair.** The MT10 ablation's SAC runs (``pcgrad_ablation_mt10.py``, their committed
slim copies) log every pair's critic-gradient cosine every 1000 updates
(``pairs/<a>/<b>/critic_cosine``). A pair's conflict rate is the share of those diagnostic updates,
over every SAC seed and the whole run, at which its cosine is negative; the pair with the highest
rate is chosen (ties: the lower mean cosine), and written with the ranking to ``--out/pair.json``.
The choice is made once: later calls read ``pair.json`` (``--rechoose`` makes it again), so seeds
added later train the same pair.

**The runs.** ``mt10/pcgrad_paper/sac`` and ``.../pcgrad`` (6 x 160, 128 transitions per task per
update, bf16 where the CPU has it) with ``env.name=<a>,<b>``, 100k steps per task, evaluations
every 25k (50 episodes per task), the diagnostics every ``DIAGNOSTICS_EVERY`` updates (with two
tasks a diagnostic update is cheap enough to draw curves: ~2% of a run). Resumable run directories
under ``--out/runs/<arm>/seed<k>``, slim committed copies under ``--out/records``
(``learning_runs.keep_run_files``).

**The numbers** (``--out/summary.md``, what the docs' reading cites): per method, each task's
success at every evaluation (mean over seeds, and per seed), and the critic's triad in the first and
the last quarter of the budget: the share of diagnostic updates at which the two tasks' gradients
conflict (cosine below 0), their mean cosine, the magnitude similarity, log10 of the ratio of the
tasks' gradient norms, and log10 of the curvature (medians of the diagnostic updates in the
quarter, then the mean over seeds). The paper's account predicts, for SAC, curvature and conflict
higher in the last quarter than in the first, and one task's gradient dominating (|log10 ratio|
large) while the other task's success stalls.

**The figure** (``--out/two_task.png``): per method, each task's success over training, and the
critic's triad: the cosine between the two tasks' gradients (conflict below 0), their magnitude
similarity and each task's gradient norm, and the multi-task curvature; thin lines are seeds,
thick their mean (diagnostics smoothed over ``SMOOTH`` points).

    python benchmarks/two_task_mt10.py --choose-only      # the pair, from the SAC runs so far
    nice python benchmarks/two_task_mt10.py --seeds 0 1 2 --jobs 2
    python benchmarks/two_task_mt10.py --report-only     # summary.md and two_task.png
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from learning_runs import (
    QUARTERS,
    ROOT,
    add_arguments,
    finished_quarters,
    keep_run_files,
    shown,
    train,
    wall_seconds,
)

from mtrl.training.logging import read_metrics

PRESETS = ROOT / "mtrl" / "presets" / "mt10" / "pcgrad_paper"
ABLATION = ROOT / "benchmarks" / "results" / "pcgrad_ablation_mt10"
ARMS = {"sac": "SAC", "pcgrad": "SAC+PCGrad"}
ALONE = "alone"  # the control: SAC on one task of the pair by itself, same preset and budget
DIAGNOSTICS_EVERY = 500
SMOOTH = 9


def conflict_rates(run_dirs: list[Path]) -> list[dict]:
    """Per pair of tasks, over every diagnostic record of ``run_dirs``: how many records, the share
    with a negative critic cosine, and the mean cosine; sorted most conflicting first."""
    cosines: dict[tuple[str, str], list[float]] = {}
    for run_dir in run_dirs:
        for record in read_metrics(run_dir):
            for key, value in record.items():
                if key.startswith("pairs/") and key.endswith("/critic_cosine"):
                    _, first, second, _ = key.split("/")
                    cosines.setdefault((first, second), []).append(float(value))
    rates = [
        {
            "pair": list(pair),
            "records": len(values),
            "conflict_rate": float(np.mean(np.array(values) < 0)),
            "mean_cosine": float(np.mean(values)),
        }
        for pair, values in cosines.items()
        if values
    ]
    return sorted(rates, key=lambda r: (-r["conflict_rate"], r["mean_cosine"]))


def choose_pair(out: Path, rechoose: bool, given: str | None = None) -> dict:
    """The pair (``pair.json``), chosen from the ablation's SAC runs unless already chosen, or
    ``given`` ("a,b") by the user: a pair whose tasks both learn alone tests the account better
    than the most conflicting one if that one holds a task too hard for the budget."""
    path = out / "pair.json"
    if given is not None:
        pair = [task.strip() for task in given.split(",")]
        if len(pair) != 2 or pair[0] == pair[1] or not all(pair):
            raise SystemExit(f"--pair takes two different task names, a,b; got {given!r}")
        if path.is_file() and json.loads(path.read_text())["pair"] != pair:
            raise SystemExit(
                f"{path} holds another pair; give this one its own --out, so runs of two pairs "
                "do not mix"
            )
        chosen = {
            "pair": pair,
            "how": "given on the command line (--pair)",
            "date": time.strftime("%Y-%m-%d"),
            "ranking": [],
        }
        out.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            path.write_text(json.dumps(chosen, indent=1) + "\n")
        return json.loads(path.read_text())
    if path.is_file() and not rechoose:
        return json.loads(path.read_text())
    sources = sorted((ABLATION / "records" / "sac").glob("seed*"))
    live = sorted((ABLATION / "runs" / "sac").glob("seed*"))
    seen = {p.name for p in live}
    run_dirs = live + [p for p in sources if p.name not in seen]  # a run's fullest copy
    rates = conflict_rates(run_dirs)
    if not rates:
        raise SystemExit("no SAC diagnostics yet: run benchmarks/pcgrad_ablation_mt10.py first")
    steps = [max(r["step"] for r in read_metrics(d) if r.get("kind") == "train") for d in run_dirs]
    chosen = {
        "pair": rates[0]["pair"],
        "how": (
            "the pair of MT10 tasks whose critic-gradient cosine was negative at the largest "
            "share of the SAC runs' diagnostic updates (every 1000 updates, all seeds)"
        ),
        "from": {d.name: s for d, s in zip(run_dirs, steps, strict=True)},
        "date": time.strftime("%Y-%m-%d"),
        "ranking": rates,
    }
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chosen, indent=1) + "\n")
    return chosen


def run_arm(arm: str, seed: int, tasks: list[str], args: argparse.Namespace) -> str:
    """One run of ``arm`` on ``tasks``: the pair, or (the control, ``arm`` = ``"sac"``) one task
    of it alone, under ``alone/<task>``, without diagnostics (one task has no pairs)."""
    where = arm if len(tasks) == 2 else f"{ALONE}/{tasks[0]}"
    run_dir = args.out / "runs" / where / f"seed{seed}"
    copy = args.out / "records" / where / f"seed{seed}"
    if not run_dir.exists() and (copy / "eval" / "final.json").is_file():
        return f"{where} seed {seed}: finished elsewhere, skipped"
    diagnostics = DIAGNOSTICS_EVERY if len(tasks) == 2 else 0
    overrides = [
        f"env.name={','.join(tasks)}",
        "agent.precision=auto",
        f"agent.diagnostics_every={diagnostics}",
        f"log_every={DIAGNOSTICS_EVERY}",  # a diagnostic lands in the next record: one per record
        f"label={ARMS[arm] if len(tasks) == 2 else alone_label(tasks[0])}",
    ]
    try:
        train(run_dir, PRESETS / f"{arm}.yaml", seed, args, overrides)
        finished = (run_dir / "eval" / "final.json").is_file()
        ended = "finished" if finished else "stopped (a rerun resumes it)"
    except SystemExit as stop:
        ended = str(stop)
    keep_run_files(run_dir, copy)  # nothing when the run logged nothing
    return f"{where} seed {seed}: {ended}"


def alone_label(task: str) -> str:
    return f"SAC, {task} alone"


def series(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(r["step"], r[key]) for r in read_metrics(run_dir) if key in r]
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, values = np.array(points, dtype=float).T
    return steps, values


def smoothed(values: np.ndarray, width: int = SMOOTH) -> np.ndarray:
    """A centred moving average (shorter at the ends), so that one batch's noise reads as a curve."""
    if len(values) < 2:
        return values
    kernel = np.ones(min(width, len(values)))
    return np.convolve(values, kernel, "same") / np.convolve(np.ones_like(values), kernel, "same")


def plot_success(
    axis, run_dir: Path, pair: list[str], color: str, label: str | None = None, only: str = ""
) -> None:
    """A run's evaluated success per task of the pair (solid: the first, dashed: the second), or
    of the task ``only`` (a single-task run)."""
    tasks = [only] if only else pair
    by_step = success_by_step(read_metrics(run_dir), tasks)
    if not by_step:
        return
    x = np.array(sorted(by_step)) / 1e3
    for k, task in enumerate(tasks):
        y = [by_step[step][k] for step in sorted(by_step)]
        style = "-" if task == pair[0] else "--"
        axis.plot(x, y, style, color=color, alpha=0.5, lw=1, marker="o", ms=3, label=label)
        label = None


def plot(out: Path, pair: list[str]) -> Path | None:
    """The two-task figure from the runs' slim copies; None before any run logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {
        arm: sorted((out / "records" / arm).glob("seed*"))
        for arm in ARMS
        if (out / "records" / arm).is_dir()
    }
    if not any(runs.values()):
        return None
    a, b = pair
    panels = [
        ("success rate (evaluation, 50 episodes)", None),
        ("critic: cosine between the tasks' gradients", "gradients/critic/cosine_mean"),
        ("critic: magnitude similarity", "gradients/critic/magnitude_similarity"),
        (f"critic: gradient norm, {a} / {b}", "norm_ratio"),
        ("critic: multi-task curvature (log10)", "gradients/critic/curvature"),
    ]
    if any(series(d, "charts/q_mean")[0].size for dirs in runs.values() for d in dirs):
        panels.append(("critic: mean Q (log10; runs recorded since 2026-12-07)", "charts/q_mean"))
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(7.5, 2.6 * len(panels)), dpi=110, sharex=True
    )
    colors = {"sac": "tab:blue", "pcgrad": "tab:orange"}
    for arm, run_dirs in runs.items():
        color = colors[arm]
        for axis, (title, key) in zip(axes, panels, strict=True):
            axis.set_title(title, fontsize=10)
            curves = []
            for run_dir in run_dirs:
                if key is None:
                    plot_success(axis, run_dir, pair, color)
                    continue
                if key == "norm_ratio":
                    x, first = series(run_dir, f"tasks/{a}/critic_grad_norm")
                    _, second = series(run_dir, f"tasks/{b}/critic_grad_norm")
                    y = np.log10(np.maximum(first, 1e-12) / np.maximum(second, 1e-12))
                else:
                    x, y = series(run_dir, key)
                    if key.endswith(("curvature", "q_mean")):
                        y = np.log10(np.maximum(np.abs(y), 1e-12))
                if len(x):
                    axis.plot(x / 1e3, smoothed(y), color=color, alpha=0.3, lw=0.8)
                    curves.append((x, smoothed(y)))
            if curves:
                length = min(len(x) for x, _ in curves)
                mean = np.mean([y[:length] for _, y in curves], axis=0)
                axis.plot(curves[0][0][:length] / 1e3, mean, color=color, lw=2, label=ARMS[arm])
    label = "SAC, each task alone"  # the control, on the first of its lines
    for task in pair:
        for run_dir in sorted((out / "records" / ALONE / task).glob("seed*")):
            plot_success(axes[0], run_dir, pair, "tab:green", label, only=task)
            label = None
    axes[0].plot([], [], "k-", label=a)
    axes[0].plot([], [], "k--", label=b)
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[3].axhline(0, color="grey", lw=0.8)
    axes[3].set_ylabel("log10 ratio")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("steps per task (thousands)")
    figure.suptitle(f"MT10 pair {a} + {b}: SAC against SAC+PCGrad (thin: seeds)", fontsize=11)
    figure.tight_layout()
    path = out / "two_task.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def triad_by_quarter(
    metrics: list[dict], pair: list[str], steps: int
) -> dict[str, dict[str, float]]:
    """The critic's triad of one run's records in the first and the last quarter of ``steps`` (per
    task): medians over the diagnostic updates there (the conflict share: their mean of cosine < 0);
    a quarter the run has not finished is left out."""
    a, b = pair
    quarters = {}
    for name, records in finished_quarters(metrics, steps):
        chosen = [r for r in records if "gradients/critic/curvature" in r]
        if not chosen:
            continue
        cosine = np.array([r[f"pairs/{a}/{b}/critic_cosine"] for r in chosen])
        norms = np.array(
            [[r[f"tasks/{a}/critic_grad_norm"], r[f"tasks/{b}/critic_grad_norm"]] for r in chosen]
        )
        quarters[name] = {
            "updates": len(chosen),
            "conflict_share": float(np.mean(cosine < 0)),
            "cosine": float(np.median(cosine)),
            "magnitude_similarity": float(
                np.median([r["gradients/critic/magnitude_similarity"] for r in chosen])
            ),
            "log10_norm_ratio": float(
                np.median(np.log10(np.maximum(norms[:, 0], 1e-12) / np.maximum(norms[:, 1], 1e-12)))
            ),
            "log10_curvature": float(
                np.median(
                    np.log10(
                        np.maximum([abs(r["gradients/critic/curvature"]) for r in chosen], 1e-12)
                    )
                )
            ),
        }
    return quarters


def health_by_quarter(
    metrics: list[dict], tasks: list[str], steps: int
) -> dict[str, dict[str, float]]:
    """The critic's and the temperatures' health of one run in the first and the last quarter of
    ``steps`` (per task): the median and the largest mean Q, each task's largest temperature and
    the median log10 curvature, those of them the record holds (mean Q and temperatures since
    2026-12-07; curvature in pair runs). Q beyond (r_max + alpha * H_max) / (1 - gamma) (rewards
    <= 10, H_max = 4 ln 2 for Meta-World's 4 actions in [-1, 1]) is a critic diverging, not
    learning; a run's own numbers show it where a mean over seeds would blur it."""
    quarters = {}
    for name, chosen in finished_quarters(metrics, steps):
        values = {}
        q = [r["charts/q_mean"] for r in chosen if "charts/q_mean" in r]
        if q:
            values |= {"q_median": float(np.median(q)), "q_max": float(np.max(q))}
        for task in tasks:
            alphas = [r[f"tasks/{task}/alpha"] for r in chosen if f"tasks/{task}/alpha" in r]
            if alphas:
                values[f"alpha_max/{task}"] = float(np.max(alphas))
        curvature = [
            abs(r["gradients/critic/curvature"])
            for r in chosen
            if "gradients/critic/curvature" in r
        ]
        if curvature:
            values["log10_curvature"] = float(np.median(np.log10(np.maximum(curvature, 1e-12))))
        if values:
            quarters[name] = values
    return quarters


def success_by_step(metrics: list[dict], pair: list[str]) -> dict[int, list[float]]:
    """Each task's evaluated success rate at every evaluation of a run (the final one included)."""
    return {
        int(r["step"]): [float(r[f"tasks/{task}/success_rate"]) for task in pair]
        for r in metrics
        if r["kind"] in ("eval", "final_eval")
    }


def summary(out: Path, pair: list[str], steps: int) -> str:
    """``summary.md``: success per task and the triad by quarter, per method (mean over seeds)."""
    a, b = pair
    lines = [
        f"Made by `python benchmarks/two_task_mt10.py --report-only` on {time.strftime('%Y-%m-%d')}"
        f" from the committed runs under `{shown(out / 'records')}` (pair {a} +"
        f" {b}; {steps // 1000}k steps per task).",
        "",
        f"Success rate at each evaluation (50 episodes per task), {a} / {b}, mean over seeds"
        " (seeds in brackets):",
        "",
        "| method | step | seeds | " + a + " | " + b + " |",
        "|---|---|---|---|---|",
    ]
    triads, runs, healths = [], [], []
    groups = [(arm, label, pair) for arm, label in ARMS.items()]
    groups += [(f"{ALONE}/{task}", alone_label(task), [task]) for task in pair]
    for where, label, tasks in groups:
        successes = {}
        for run_dir in sorted((out / "records" / where).glob("seed*")):
            metrics = read_metrics(run_dir)
            last = max((int(r["step"]) for r in metrics), default=0)
            done = "" if (run_dir / "eval" / "final.json").is_file() else ", unfinished"
            hours = wall_seconds(metrics, len(tasks)) / 3600
            info = run_dir / "run.json"  # the precision: the machines differ
            precision = (
                json.loads(info.read_text()).get("precision", "?") if info.is_file() else "?"
            )
            runs.append(
                f"{label} {run_dir.name} ({last // 1000}k, {hours:.2f} h, {precision}{done})"
            )
            successes[run_dir.name] = success_by_step(metrics, tasks)
            for quarter, values in health_by_quarter(metrics, tasks, steps).items():
                healths.append((f"{label} {run_dir.name}", quarter, values))
            if len(tasks) == 2:
                for quarter, values in triad_by_quarter(metrics, pair, steps).items():
                    triads.append((label, quarter, values))
        for step in sorted({s for by_step in successes.values() for s in by_step}):
            there = [by_step[step] for by_step in successes.values() if step in by_step]
            cells = []
            for task in pair:
                if task not in tasks:
                    cells.append("-")
                    continue
                values = [v[tasks.index(task)] for v in there]
                cells.append(f"{np.mean(values):.2f} ({', '.join(f'{v:.2f}' for v in values)})")
            lines.append(f"| {label} | {step // 1000}k | {len(there)} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "The critic's triad in the first and the last quarter of the budget (medians over the"
        " diagnostic updates in the quarter, mean over seeds; conflict share: the fraction of those"
        f" updates with cosine < 0; norm ratio: {a} over {b}):",
        "",
        "| method | quarter | seeds | updates | conflict share | cosine | magnitude similarity"
        " | log10 norm ratio | log10 curvature |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = (
        "conflict_share",
        "cosine",
        "magnitude_similarity",
        "log10_norm_ratio",
        "log10_curvature",
    )
    for label in ARMS.values():
        for quarter in QUARTERS:
            rows = [v for lab, q, v in triads if lab == label and q == quarter]
            if not rows:
                continue
            means = [f"{np.mean([r[k] for r in rows]):+.3f}" for k in keys]
            updates = sum(r["updates"] for r in rows)
            lines.append(
                f"| {label} | {quarter} | {len(rows)} | {updates} | " + " | ".join(means) + " |"
            )
    if healths:
        lines += [
            "",
            "The critic's and the temperatures' health per run, first and last quarter: mean Q"
            f" (median, largest), each task's largest temperature alpha ({a} / {b}) and the"
            " critic's median log10 curvature (-: not in the record; mean Q and temperatures are"
            " kept since 2026-12-07):",
            "",
            "| run | quarter | median Q | largest Q | "
            + a
            + " alpha | "
            + b
            + " alpha | log10 curvature |",
            "|---|---|---|---|---|---|---|",
        ]

        def cell(values: dict, key: str, form: str) -> str:
            return format(values[key], form) if key in values else "-"

        for run, quarter, values in healths:
            cells = [cell(values, "q_median", ".4g"), cell(values, "q_max", ".4g")]
            cells += [cell(values, f"alpha_max/{task}", ".3g") for task in pair]
            cells.append(cell(values, "log10_curvature", ".1f"))
            lines.append(f"| {run} | {quarter} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Runs (last step per task, wall-clock hours from the logged windows, precision: bf16 on"
        " the AMX machines, fp32 on the AVX2-only one, which is slower): " + "; ".join(runs) + ".",
    ]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/two_task_mt10", [0, 1, 2], 100_000, 25_000)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--choose-only", action="store_true", help="choose the pair, no training")
    parser.add_argument("--rechoose", action="store_true", help="choose the pair again")
    parser.add_argument(
        "--alone",
        nargs="*",
        metavar="TASK",
        help="the control: SAC on each task of the pair alone (or only on the tasks named)",
    )
    parser.add_argument("--pair", help="train this pair (a,b) instead of the chosen one")
    parser.add_argument(
        "--arms", nargs="+", default=list(ARMS), choices=ARMS, help="methods to train"
    )
    args = parser.parse_args()
    chosen = choose_pair(args.out, args.rechoose, args.pair)
    pair = chosen["pair"]
    print(f"pair: {' + '.join(pair)} ({chosen['how']}); top 5:")
    for rate in chosen["ranking"][:5]:
        print(
            f"  {' + '.join(rate['pair'])}: conflict at {rate['conflict_rate']:.2f} of "
            f"{rate['records']} diagnostic updates, mean cosine {rate['mean_cosine']:+.3f}"
        )
    if args.choose_only:
        return
    if not args.report_only:
        if args.alone is not None:  # the pair's second task first: the one that stalled so far
            unknown = sorted(set(args.alone) - set(pair))
            if unknown:
                parser.error(f"--alone names tasks outside the pair {','.join(pair)}: {unknown}")
            alone = [task for task in reversed(pair) if not args.alone or task in args.alone]
            queue = [("sac", seed, [task]) for task in alone for seed in args.seeds]
        else:
            queue = [(arm, seed, pair) for seed in args.seeds for arm in args.arms]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for line in pool.map(lambda job: run_arm(*job, args), queue):
                print(line, flush=True)
    # The slim copies, refreshed from the run directories here that no process is writing.
    for run_dir in sorted((args.out / "runs").glob("**/seed*")):
        keep_run_files(run_dir, args.out / "records" / run_dir.relative_to(args.out / "runs"))
    print(summary(args.out, pair, args.steps))
    print(plot(args.out, pair) or "no runs yet")


if __name__ == "__main__":
    main()
