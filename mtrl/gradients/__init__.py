"""The gradient step: how per-task gradients of the shared parameters become one update.

A method is a small object with ``combine(task_grads [T, P], task_losses [T]) -> [P]`` on the scale of
the mean task gradient (../DESIGN.md, "The gradient-method contract"). The registry is an explicit
dict, so a YAML file names a key, never an import path.
"""

from __future__ import annotations

import difflib
from typing import Any

from mtrl.gradients.base import GradientMethod
from mtrl.gradients.mean import Mean

GRADIENT_METHODS: dict[str, type[GradientMethod]] = {
    "mean": Mean,
}


def make(name: str, num_tasks: int, seed: int = 0, **options: Any) -> GradientMethod:
    if name not in GRADIENT_METHODS:
        close = difflib.get_close_matches(name, list(GRADIENT_METHODS), n=3)
        hint = (
            f"did you mean: {', '.join(close)}?"
            if close
            else f"valid: {', '.join(GRADIENT_METHODS)}"
        )
        raise ValueError(f"unknown gradient method '{name}'; {hint}")
    return GRADIENT_METHODS[name](num_tasks=num_tasks, seed=seed, **options)


__all__ = ["GRADIENT_METHODS", "GradientMethod", "make"]
