"""A gradient method of your own, trained by name beside the built-in ones.

The method is examples/plugin/mtrl_agreeing_mean.py: the mean over the tasks whose gradient
agrees with the mean gradient, from the Gram matrix of the per-task gradients. Here it is
registered for this process only; `pip install ./examples/plugin` makes it a plugin (an entry
point in the "mtrl.gradients" group), found by name by `mtrl train`, sweeps and `mtrl eval` in
any process:

    pip install ./examples/plugin
    mtrl train --config synthetic agent.critic_grad=agreeing_mean agent.actor_grad=agreeing_mean

    python examples/custom_gradient_method.py --steps 300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import mtrl
from mtrl.gradients import GRADIENT_METHODS, make

sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin"))  # the plugin, uninstalled
from mtrl_agreeing_mean import AgreeingMean  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000, help="vector-env steps")
    parser.add_argument("--run-dir", default="runs/example-custom-gradient-method")
    args = parser.parse_args()

    GRADIENT_METHODS["agreeing_mean"] = AgreeingMean
    method = make("agreeing_mean", num_tasks=3)
    g = torch.tensor([[1.0, 0.0], [0.8, 0.2], [-0.5, 0.1]])  # the third task pulls the other way
    print(f"weights on a conflicting Jacobian: {method.weights(g @ g.T, None, None).tolist()}")

    result = mtrl.train(
        "synthetic",
        run_dir=args.run_dir,
        total_steps=args.steps,
        eval_every=0,
        checkpoint_every=args.steps,
        progress=False,
        agent={"critic_grad": "agreeing_mean", "actor_grad": "agreeing_mean"},
    )
    print(f"agreeing_mean: final mean success {result.mean_success:.2f} after {result.step} steps")


if __name__ == "__main__":
    main()
