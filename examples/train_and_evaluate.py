"""Train on the synthetic tasks, then load the policy, act with it and evaluate it, from Python.

python examples/train_and_evaluate.py                 # ~1 minute on 2 CPU cores
python examples/train_and_evaluate.py --steps 300     # a smoke run
"""

from __future__ import annotations

import argparse

import numpy as np

import mtrl
from mtrl.evaluation.protocol import format_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000, help="vector-env steps")
    parser.add_argument("--run-dir", default="runs/example-train-and-evaluate")
    args = parser.parse_args()

    # A shipped preset by name, with keyword fields on top (nested sections as dicts).
    result = mtrl.train(
        "synthetic",
        run_dir=args.run_dir,
        total_steps=args.steps,
        eval_every=args.steps // 2,
        checkpoint_every=args.steps // 2,
        progress=False,
        agent={"critic": "multihead"},
    )
    print(f"trained {result.step} steps, final mean success {result.mean_success:.2f}")

    # The policy of the run's last checkpoint: one state, or a batch, of a task given by name.
    policy = mtrl.load_policy(result.run_dir)
    state = np.zeros(policy.state_dim, dtype=np.float32)
    print(f"{policy.task_names[0]} at the origin: action {policy.predict(state, task=0)}")
    batch = np.random.default_rng(0).uniform(-1, 1, (8, policy.state_dim)).astype(np.float32)
    print(f"a batch of {len(batch)} states: actions {policy.predict(batch, task='point-1').shape}")

    # Meta-World's protocol (one episode per training goal), on fresh evaluation envs.
    print(format_table(mtrl.evaluate(policy, episodes=10)))


if __name__ == "__main__":
    main()
