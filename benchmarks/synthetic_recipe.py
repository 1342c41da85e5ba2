"""The critic recipe's pieces on tasks whose rewards differ a thousandfold (synthetic-scaled:4, task
i's reward x 10^i): final mean success of each variant over seeds, in minutes on 2 cores.

    python benchmarks/synthetic_recipe.py [--seeds 0 1 2] [--steps 2500]

Every run is the ``synthetic`` preset plus the row's overrides (as tests/test_train.py's learning
tests run it), evaluated at the end over 10 episodes per task.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mtrl.config import build_config
from mtrl.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
NORMALISED = ["agent.reward_norm=returns", "agent.v_min=-100", "agent.v_max=100"]
ROWS = {
    "MT-SAC, no normalisation": [],
    "reward_norm=returns, v_max=100": NORMALISED,
    "reward_norm=returns, v_max=10 (BRC's value)": ["agent.reward_norm=returns"],
    "same, init_temperature=0.1": ["agent.reward_norm=returns", "agent.init_temperature=0.1"],
    "reward_norm=scale (ARS)": ["agent.reward_norm=scale"],
    "hl_gauss, reward_norm=returns, v_max=100": [*NORMALISED, "agent.critic_loss=hl_gauss"],
    "categorical, reward_norm=returns, v_max=100": [*NORMALISED, "agent.critic_loss=categorical"],
}


def final_success(overrides: list[str], seed: int, steps: int, root: Path) -> float:
    run_dir = root / f"run{time.monotonic_ns()}"
    config = build_config(
        ROOT / "mtrl" / "presets" / "synthetic.yaml",
        [
            "env.name=synthetic-scaled:4",
            f"seed={seed}",
            f"total_steps={steps}",
            "eval_every=0",
            "final_eval_episodes=10",
            "agent.compile=false",
            "progress=false",
            f"run_dir={run_dir}",
            *overrides,
        ],
    )
    trainer = Trainer(config, run_dir)
    try:
        results = trainer.train()
    finally:
        trainer.close()
    return float(np.mean([r.success_rate for r in results.values()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=2_500)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    print("| synthetic-scaled:4 | seeds | mean success | per seed | minutes |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for name in args.rows:
            start = time.perf_counter()
            finals = [final_success(ROWS[name], s, args.steps, Path(root)) for s in args.seeds]
            minutes = (time.perf_counter() - start) / 60
            per_seed = ", ".join(f"{f:.2f}" for f in finals)
            print(
                f"| {name} | {len(finals)} | {np.mean(finals):.2f} | {per_seed} | {minutes:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
