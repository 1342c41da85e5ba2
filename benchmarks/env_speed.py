"""Environment throughput: the synthetic env, and Meta-World through our vector env vs raw stepping.

The ratio column is the cost of our layer (wrappers, gymnasium's vector env, one-hot, final-info
handling) over calling the Meta-World env classes directly; all rows are measured in one run, on
one machine, with the same pre-drawn random actions.

    python benchmarks/env_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mtrl.envs import SyntheticVecEnv
from mtrl.experiments.bench import ours_rate, per_second, raw_rate


def random_actions(steps: int, num_tasks: int, action_dim: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, size=(steps, num_tasks, action_dim))  # [N, T, A]


def synthetic_rate(num_tasks: int, steps: int) -> float:
    env = SyntheticVecEnv(num_tasks=num_tasks, seed=0)
    env.reset()
    actions = random_actions(steps, num_tasks, env.action_dim)
    return num_tasks * per_second(lambda k: env.step(actions[k]), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps; same rows")
    args = parser.parse_args()
    synthetic_steps, mt1_steps, mt10_steps = (
        (2_000, 300, 60) if args.quick else (20_000, 3_000, 600)
    )

    rows: list[tuple[str, int, str, float, float | None]] = []
    for num_tasks in (4, 10):
        rows.append(
            (
                "synthetic",
                num_tasks,
                "mtrl (numpy)",
                synthetic_rate(num_tasks, synthetic_steps),
                None,
            )
        )
    for spec, tasks, steps in (("MT1:reach-v3", 1, mt1_steps), ("MT10", 10, mt10_steps)):
        start = time.perf_counter()
        raw = raw_rate(spec, steps)  # first: generates (and caches) the goals
        print(f"{spec}: goals + raw envs built and stepped in {time.perf_counter() - start:.1f} s")
        rows.append((spec, tasks, "raw metaworld", raw, 1.0))
        for vector in ("sync", "async"):
            rate = ours_rate(spec, steps, vector)
            rows.append((spec, tasks, f"mtrl {vector}", rate, rate / raw))

    print(f"\ncores: {os.cpu_count()}   ({'quick' if args.quick else 'full'} run)")
    print(f"{'env':<14}{'tasks':>6}  {'implementation':<16}{'task steps/s':>14}{'vs raw':>8}")
    for env_name, tasks, impl, rate, ratio in rows:
        ratio_text = f"{ratio:.2f}" if ratio is not None else "-"
        print(f"{env_name:<14}{tasks:>6}  {impl:<16}{rate:>14,.0f}{ratio_text:>8}")


if __name__ == "__main__":
    main()
