"""Stop a run from Python when it is good enough, then resume it to its full length.

A callback's hook that returns False stops the run cleanly at that step: a checkpoint is written
and run.json says who stopped it; `mtrl.train(resume=...)` (or `mtrl train --resume`) goes on.

    python examples/early_stopping.py --steps 600 --target 0.0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mtrl
from mtrl.evaluation.protocol import mean_success


class StopAtSuccess(mtrl.Callback):
    """Stops at the first periodic evaluation whose mean success reaches ``target``."""

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target

    def on_eval(self, step, results, final):
        success = mean_success(results)
        print(f"step {step}: mean success {success:.2f}")
        return final or success < self.target  # False: stop here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4_000, help="vector-env steps at most")
    parser.add_argument("--target", type=float, default=0.9, help="mean success to stop at")
    parser.add_argument("--run-dir", default="runs/example-early-stopping")
    args = parser.parse_args()

    settings = {"total_steps": args.steps, "eval_every": args.steps // 4, "progress": False}
    stopped = mtrl.train("synthetic", run_dir=args.run_dir, callbacks=StopAtSuccess(args.target),
                         **settings)  # fmt: skip
    run = json.loads((Path(args.run_dir) / "run.json").read_text())
    print(f"run.json: {run['status']} at step {run['step']} ({run.get('reason', '')})")
    if not stopped.finished:
        resumed = mtrl.train(resume=args.run_dir)
        print(f"resumed to step {resumed.step}: final mean success {resumed.mean_success:.2f}")


if __name__ == "__main__":
    main()
