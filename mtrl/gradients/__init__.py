"""The gradient step: how per-task gradients of the shared parameters become one update.

A method is a small object with ``combine(task_grads [T, P], task_losses [T]) -> [P]`` on the scale of
the mean task gradient (../DESIGN.md, "The gradient-method contract"). The registry is an explicit
dict, so a YAML file names a key, never an import path.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import yaml

from mtrl.gradients.base import GradientMethod
from mtrl.gradients.cagrad import CAGrad
from mtrl.gradients.dtp import DynamicTaskPrioritization
from mtrl.gradients.dwa import DynamicWeightAverage
from mtrl.gradients.gradnorm import GradNorm
from mtrl.gradients.imtl import IMTLG
from mtrl.gradients.lbtw import LossBalancedTaskWeighting
from mtrl.gradients.mean import Mean
from mtrl.gradients.mgda import MGDA
from mtrl.gradients.normalization import (
    GradNormNormalization,
    InitialLossNormalization,
    RealTimeLossNormalization,
)
from mtrl.gradients.pcgrad import PCGrad, PCGradDirection, PCGradMagnitude
from mtrl.gradients.uncertainty import UncertaintyWeighting

GRADIENT_METHODS: dict[str, type[GradientMethod]] = {
    "mean": Mean,
    "pcgrad": PCGrad,
    "pcgrad_dir": PCGradDirection,
    "pcgrad_mag": PCGradMagnitude,
    "mgda": MGDA,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "gradnorm": GradNorm,
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "lbtw": LossBalancedTaskWeighting,
    "dtp": DynamicTaskPrioritization,
    "initial_loss": InitialLossNormalization,
    "realtime_loss": RealTimeLossNormalization,
    "gradnorm_normalization": GradNormNormalization,
}


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cagrad:c=0.5"`` or ``"pcgrad_dir:scope=combined"`` -> (name, options); values are YAML
    scalars. The form lets a config or a command line choose a method and its options in one key."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"gradient method option {item!r} is not of the form key=value")
        try:
            options[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            options[key.strip()] = raw.strip()
    return name.strip(), options


def make(name: str, num_tasks: int, seed: int = 0, **options: Any) -> GradientMethod:
    """A method by registry name (or by spec with options, see ``parse_spec``)."""
    name, spec_options = parse_spec(name)
    options = {**spec_options, **options}
    if name not in GRADIENT_METHODS:
        close = difflib.get_close_matches(name, list(GRADIENT_METHODS), n=3)
        hint = (
            f"did you mean: {', '.join(close)}?"
            if close
            else f"valid: {', '.join(GRADIENT_METHODS)}"
        )
        raise ValueError(f"unknown gradient method '{name}'; {hint}")
    method_cls = GRADIENT_METHODS[name]
    allowed = [
        p
        for p in inspect.signature(method_cls.__init__).parameters
        if p not in ("self", "num_tasks", "seed")
    ]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"{name}: unknown option {', '.join(unknown)} (its options: {valid})")
    return method_cls(num_tasks=num_tasks, seed=seed, **options)


__all__ = ["GRADIENT_METHODS", "GradientMethod", "make", "parse_spec"]
