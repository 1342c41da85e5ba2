"""Compare two methods as a paper would: seeds x tasks, IQM and mean with 95% stratified-bootstrap
intervals, the probability of improvement (rliable's statistics, `mtrl report`'s tables).

    python examples/report_with_intervals.py                      # 2 methods x 3 seeds, ~5 min
    python examples/report_with_intervals.py --steps 300 --seeds 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mtrl
from mtrl.analysis.report import make_report

METHODS = {"SAC": "mean", "SAC+PCGrad": "pcgrad"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_500, help="vector-env steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--run-dir", default="runs/example-report")
    args = parser.parse_args()
    root = Path(args.run_dir)

    for label, method in METHODS.items():
        for seed in range(args.seeds):
            run_dir = root / label / f"seed{seed}"
            if (run_dir / "eval" / "final.json").is_file():
                continue  # run again: only what is missing trains
            mtrl.train(
                "synthetic",
                run_dir=run_dir,
                seed=seed,
                label=label,  # how the report names the method
                total_steps=args.steps,
                eval_every=args.steps // 3,
                checkpoint_every=args.steps,
                progress=False,
                agent={"critic_grad": method},
            )

    # Reads only run directories: each run's final evaluation, grouped by label.
    report = make_report([root], root / "report", bootstrap_reps=2_000)
    print((root / "report" / "aggregates.md").read_text())
    for row in report["improvement"]:  # every ordered pair of methods in an env
        x, y, p = row["method_x"], row["method_y"], row["probability"]
        print(f"P({x} > {y}) = {p:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]")
    print(f"tables and figures: {root / 'report'}")


if __name__ == "__main__":
    main()
