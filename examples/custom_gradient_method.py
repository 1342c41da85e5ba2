"""A gradient method of your own, trained by name beside the built-in ones.

A method sees the T x T Gram matrix G of the per-task gradients (G_ij = g_i . g_j, computed in
one batched pass) and returns weights w; the step is sum_i w_i g_i. This one drops the tasks whose
gradient points against the mean gradient (g_i . g_mean < 0) and averages the rest: a toy cousin
of PCGrad that needs nothing but G.

Registered here for this process only. For `mtrl train`, sweeps and `mtrl eval` in other
processes, ship it in a package with an entry point (see mtrl/plugins.py):

    [project.entry-points."mtrl.gradients"]
    agreeing_mean = "my_package:AgreeingMean"

    python examples/custom_gradient_method.py --steps 300
"""

from __future__ import annotations

import argparse

import torch

import mtrl
from mtrl.gradients import GRADIENT_METHODS, make


class AgreeingMean(mtrl.GradientMethod):
    """The mean over the tasks whose gradient has a non-negative dot product with the mean."""

    def weights(self, gram_matrix, task_losses, context):
        agreement = gram_matrix.sum(dim=1)  # [T]: T * (g_i . g_mean)
        keep = (agreement >= 0).to(gram_matrix.dtype)
        if keep.sum() == 0:  # cannot happen (sum_i g_i . g_mean = T |g_mean|^2 >= 0), but be safe
            keep = torch.ones_like(keep)
        return keep / keep.sum()


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
