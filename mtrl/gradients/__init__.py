"""The gradient step: how per-task gradients of the shared parameters become one update.

A method is a small object of one of three kinds (``base.py``; docs/design.md, "The method
contract"): a ``GramWeighting`` (``weights(G, losses, context) -> w [T]``), a ``LossWeighting``
(``weights(losses, context) -> w [T]``) or a ``BlockAggregator`` (GradDrop), the step being
sum_i w_i g_i on the scale of the mean task gradient; ``step.py`` is the engine that reads the kind,
computes what it needs (the task gradients and their Gram matrix, or the losses alone) and takes
the step. The registry is an explicit dict, so a YAML file names
a key, never an import path; other packages add methods through the ``mtrl.gradients`` entry
points (``mtrl.plugins``).
"""

from __future__ import annotations

import inspect
from typing import Any

from mtrl import plugins
from mtrl.gradients.aligned_mtl import AlignedMTL
from mtrl.gradients.base import BlockAggregator, GradientMethod, GramWeighting, LossWeighting
from mtrl.gradients.cagrad import CAGrad
from mtrl.gradients.conflict_free import ConFIG
from mtrl.gradients.cr_mogm import CRMOGM
from mtrl.gradients.db_mtl import DBMTL
from mtrl.gradients.dtp import DynamicTaskPrioritization
from mtrl.gradients.dwa import DynamicWeightAverage
from mtrl.gradients.excess_mtl import ExcessMTL
from mtrl.gradients.fairgrad import FairGrad
from mtrl.gradients.famo import FAMO
from mtrl.gradients.graddrop import GradDrop
from mtrl.gradients.gradnorm import GradNorm
from mtrl.gradients.gradvac import GradVac
from mtrl.gradients.imtl import IMTLG
from mtrl.gradients.lbtw import LossBalancedTaskWeighting
from mtrl.gradients.mean import Mean
from mtrl.gradients.mgda import MGDA
from mtrl.gradients.moco import MoCo
from mtrl.gradients.modo import MoDo
from mtrl.gradients.nash_mtl import NashMTL
from mtrl.gradients.normalization import (
    GradNormNormalization,
    InitialLossNormalization,
    RealTimeLossNormalization,
)
from mtrl.gradients.pcgrad import PCGrad, PCGradDirection, PCGradMagnitude
from mtrl.gradients.rlw import RandomLossWeighting
from mtrl.gradients.sdmgrad import SDMGrad
from mtrl.gradients.stch import STCH
from mtrl.gradients.uncertainty import UncertaintyWeighting
from mtrl.gradients.upgrad import DualProj, UPGrad
from mtrl.specs import check_options, check_registered, lookup, parse_spec

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
    "nash_mtl": NashMTL,
    "fairgrad": FairGrad,
    "aligned_mtl": AlignedMTL,
    "upgrad": UPGrad,
    "dualproj": DualProj,
    "conflict_free": ConFIG,
    "gradvac": GradVac,
    "rlw": RandomLossWeighting,
    "graddrop": GradDrop,
    "famo": FAMO,
    "sdmgrad": SDMGrad,
    "modo": MoDo,
    "excess_mtl": ExcessMTL,
    "cr_mogm": CRMOGM,
    "stch": STCH,
    "moco": MoCo,
    "db_mtl": DBMTL,
}

# A method's kind is its type (``base.py``); a direct GradientMethod subclass with ``weights(G,
# losses, context)``, written against the contract before the kinds, is a Gram weighting.
KINDS = (GramWeighting, LossWeighting, BlockAggregator)


def make(name: str, num_tasks: int, seed: int = 0, **options: Any) -> GradientMethod:
    """A method by registry name (or by spec with options, see ``mtrl.specs.parse_spec``). The
    ``seed`` (of the methods that draw random numbers) goes only to a constructor that takes it,
    so a user's method that draws none may leave it out."""
    plugins.load("mtrl.gradients", GRADIENT_METHODS, GradientMethod)
    name, spec_options = parse_spec(name)
    plugins.require("mtrl.gradients", name)
    options = {**spec_options, **options}
    method_cls = lookup(GRADIENT_METHODS, name, "gradient method")
    if not issubclass(method_cls, KINDS) and not callable(getattr(method_cls, "weights", None)):
        raise ValueError(
            f"{name}: {method_cls.__name__} is of no kind of gradient method: subclass one of"
            " GramWeighting, LossWeighting, BlockAggregator (mtrl.gradients)"
        )
    check_options(name, method_cls, options, fixed=("num_tasks", "seed"))
    parameters = inspect.signature(method_cls.__init__).parameters.values()
    if any(p.name == "seed" or p.kind is p.VAR_KEYWORD for p in parameters):
        options["seed"] = seed
    return method_cls(num_tasks=num_tasks, **options)


def check_spec(key: str, spec: str) -> None:
    """A config key's method spec (``agent.critic_grad=cagrad:c=0.5``), or a one-line ConfigError."""
    plugins.load("mtrl.gradients", GRADIENT_METHODS, GradientMethod)
    check_registered(
        key,
        spec,
        GRADIENT_METHODS,
        lambda s: make(s, num_tasks=2),
        lambda name: plugins.require("mtrl.gradients", name, key),
    )


__all__ = [
    "GRADIENT_METHODS",
    "BlockAggregator",
    "GradientMethod",
    "GramWeighting",
    "LossWeighting",
    "check_spec",
    "make",
    "parse_spec",
]
