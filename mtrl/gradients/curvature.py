"""The PCGrad paper's multi-task curvature (Yu et al. 2020, Def. 3 and Theorem 2), measured along
the update a step actually applied.

H(L; theta, theta') = int_0^1 g^T grad^2 L(theta + a (theta' - theta)) g da, with L the mean task
loss and g = grad L(theta), by 3-point Gauss-Legendre quadrature (exact when g^T grad^2 L g is a
polynomial of degree <= 5 in a) of Hessian-vector products (torch.func: the jvp of the gradient).
Theorem 2 assumes H >= l ||g||^2; the logged ``curvature`` is that l, H / ||g||^2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Params = dict[str, torch.Tensor]
# Gauss-Legendre on [0, 1]: nodes 1/2 -+ sqrt(3/5)/2 and 1/2, weights 5/18, 8/18, 5/18.
NODES = (0.5 - 0.5 * math.sqrt(0.6), 0.5, 0.5 + 0.5 * math.sqrt(0.6))
WEIGHTS = (5 / 18, 8 / 18, 5 / 18)


def _dot(a: Params, b: Params) -> torch.Tensor:
    return sum((a[n].double() * b[n].double()).sum() for n in a)


def multitask_curvature(
    loss: Callable[[Params], torch.Tensor], before: Params, after: Params
) -> torch.Tensor:
    """l = H / ||g||^2 for the scalar ``loss`` of parameters, along before -> after (float64)."""
    gradient = torch.func.grad(loss)
    g = gradient(before)
    total = torch.zeros((), dtype=torch.float64)
    for node, weight in zip(NODES, WEIGHTS, strict=True):
        point = {n: before[n] + node * (after[n] - before[n]) for n in before}
        _, hessian_g = torch.func.jvp(gradient, (point,), (g,))
        total = total + weight * _dot(g, hessian_g)
    return total / _dot(g, g).clamp_min(1e-30)
