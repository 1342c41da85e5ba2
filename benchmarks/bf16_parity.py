"""Does bf16 learn as fp32 does? MT-MH-SAC W = 256 with agent.precision=bf16 beside fp32.

- MT1 reach-v3, 50k steps, seeds 0-2, both precisions, evaluated every 10k steps (50 episodes:
  every training goal once);
- MT10, 50k steps per task, seeds 0-2: bf16 here; fp32 is the MT10 reference benchmark's seeds
  (``reference_mt10.py``: the same preset, seeds and evaluations every 25k; it went on to 100k,
  which changes nothing before 50k), unless ``--mt10-fp32`` trains them here.

The preset is ``mt10/scaling/mtmhsac_w0256`` (McLean et al. 2025's setup; for MT1 with
``env.name=MT1:reach-v3``). Each run is a resumable run directory under ``--out/runs/<suite>/
<precision>/seed<k>`` and its curve a committed record under ``--out/records/`` (run directories
stay on the machine that ran them). ``--report-only`` writes the table from what exists.

    nice python benchmarks/bf16_parity.py               # ~1.5-2 h on 2 cores
    python benchmarks/bf16_parity.py --report-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from learning_runs import ROOT, add_arguments, load_record, record_curve, train

PRESET = ROOT / "mtrl" / "presets" / "mt10" / "scaling" / "mtmhsac_w0256.yaml"
REFERENCE = ROOT / "benchmarks" / "results" / "reference_mt10" / "tanh" / "records"
# suite -> (env overrides, tasks, eval every, seeds)
SUITES = {
    "MT1": (["env.name=MT1:reach-v3", "label=MT1 reach-v3"], 1, 10_000, [0, 1, 2]),
    "MT10": ([], 10, 25_000, [0, 1, 2]),
}
PRECISIONS = ("fp32", "bf16")


def curves(out: Path, suite: str, precision: str) -> tuple[dict[int, dict], str]:
    """seed -> curve, and where they come from (MT10 fp32: the reference's, unless run here)."""
    tasks = SUITES[suite][1]
    found = {}
    folder = out / "runs" / suite / precision
    names = {p.name for p in folder.glob("seed*")}
    names |= {p.stem for p in (out / "records" / suite / precision).glob("seed*.json")}
    for name in names:
        record = out / "records" / suite / precision / f"{name}.json"
        curve = record_curve(folder / name, record, tasks)
        if curve is not None and curve["means"]:
            found[int(name.removeprefix("seed"))] = curve
    if found or (suite, precision) != ("MT10", "fp32"):
        return found, "here"
    seeds = SUITES["MT10"][3]
    return {s: load_record(REFERENCE / f"seed{s}.json") for s in seeds}, "reference_mt10"


def report(out: Path, steps: int) -> str:
    rows, results = [], {}
    for suite in SUITES:
        for precision in PRECISIONS:
            found, source = curves(out, suite, precision)
            reached = {s: c for s, c in found.items() if steps in c["means"]}
            if not reached:
                continue
            per_seed = {s: float(c["means"][steps]) for s, c in sorted(reached.items())}
            common = set.intersection(*(set(c["means"]) for c in reached.values()))
            curve_steps = sorted(k for k in common if k <= steps)
            mean_curve = {
                k: float(np.mean([c["means"][k] for c in reached.values()])) for k in curve_steps
            }
            hours = [c["seconds"] / 3600 for c in reached.values()] if source == "here" else []
            results[f"{suite}/{precision}"] = {
                "per_seed": per_seed,
                "mean": float(np.mean(list(per_seed.values()))),
                "curve": mean_curve,
                "hours": hours,
                "source": source,
            }
            seeds = ", ".join(f"{s}: {v:.2f}" for s, v in per_seed.items())
            curve = ", ".join(f"{k // 1000}k {v:.2f}" for k, v in mean_curve.items())
            time = ", ".join(f"{h:.2f}" for h in hours) if hours else "(the MT10 reference's)"
            rows.append(
                f"| {suite} | {precision} | {len(per_seed)} | "
                f"{results[f'{suite}/{precision}']['mean']:.2f} | {seeds} | {curve} | {time} |"
            )
    lines = [
        f"| suite | precision | seeds | mean success at {steps // 1000}k | per seed | "
        "mean curve | hours per run |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    for suite in SUITES:
        fp32, bf16 = results.get(f"{suite}/fp32"), results.get(f"{suite}/bf16")
        if fp32 and bf16:
            common = sorted(set(fp32["per_seed"]) & set(bf16["per_seed"]))
            differences = [bf16["per_seed"][s] - fp32["per_seed"][s] for s in common]
            speed = (
                f"; wall-clock fp32 / bf16 {np.mean(fp32['hours']) / np.mean(bf16['hours']):.2f}x"
                if fp32["hours"] and bf16["hours"]
                else ""
            )
            lines.append(
                f"{suite}: bf16 - fp32 = {np.mean(differences):+.2f} in mean success over the "
                f"seeds run in both, {common} (per seed: "
                f"{', '.join(f'{d:+.2f}' for d in differences)})" + speed
            )
    text = "\n".join(lines)
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/bf16_parity", [], 50_000, 0)
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--mt10-fp32", action="store_true", help="train MT10 fp32 here too")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        for suite in args.suites:
            overrides, _, eval_every, default_seeds = SUITES[suite]
            budget = argparse.Namespace(**{**vars(args), "eval_every": eval_every})
            for seed in args.seeds or default_seeds:
                for precision in PRECISIONS:
                    if (suite, precision) == ("MT10", "fp32") and not args.mt10_fp32:
                        continue
                    run_dir = args.out / "runs" / suite / precision / f"seed{seed}"
                    # tanh-bounded log std: as the MT10 fp32 reference runs (before the preset
                    # took McLean et al.'s clip), so that both precisions compare like with like.
                    options = [
                        *overrides,
                        f"agent.precision={precision}",
                        "agent.log_std_bound=tanh",
                    ]
                    train(run_dir, PRESET, seed, budget, options)
                    report(args.out, args.steps)  # the record lands as each run finishes
    print(report(args.out, args.steps))


if __name__ == "__main__":
    main()
