"""Actor and critic bodies, selectable by name (``agent.actor`` / ``agent.critic``).

A body maps grouped observations x [G, B, obs] (every row of a group from one task; observations end
with the task one-hot) to [G, B, out]. Its ``task_specific`` name prefixes mark the parameters that
belong to single tasks (heads, towers, gates, own experts); those keep the task on dimension 0, and
gradient methods never mix them. A spec can carry options, ``"mmoe:experts=6,width=256"``; ``width``
(every hidden layer's width) is understood by all of them, so presets can match parameter counts.
The residual bodies (``bronet``, ``simba``) have one width and ``blocks`` instead of a depth; SimBa
keeps running input statistics that the agent feeds with ``update_running_norms``.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from mtrl import limits, plugins
from mtrl.agents.networks.care import CAREBody, bind_task_names
from mtrl.agents.networks.embedding import TaskEmbedded
from mtrl.agents.networks.experts import CGCBody, MMoEBody, PLEBody
from mtrl.agents.networks.film import FiLMBody
from mtrl.agents.networks.layers import Ensemble, he_uniform_init
from mtrl.agents.networks.mlp import MultiHeadBody, SharedBody
from mtrl.agents.networks.moore import MOOREBody
from mtrl.agents.networks.paco import PaCoBody, reset_diverging_tasks, resettable_bodies
from mtrl.agents.networks.residual import (
    BroNetBody,
    SimbaBody,
    running_norms,
    update_running_norms,
)
from mtrl.agents.networks.soft_modular import SoftModularBody
from mtrl.agents.networks.task_routed import TaskRoutedBody
from mtrl.errors import ConfigError
from mtrl.specs import check_options, check_registered, lookup, parse_spec

NETWORKS: dict[str, type[nn.Module]] = {
    "shared": SharedBody,
    "multihead": MultiHeadBody,
    "mmoe": MMoEBody,
    "cgc": CGCBody,
    "ple": PLEBody,
    "soft_modular": SoftModularBody,
    "task_routed": TaskRoutedBody,
    "bronet": BroNetBody,
    "simba": SimbaBody,
    "moore": MOOREBody,
    "paco": PaCoBody,
    "care": CAREBody,
    "film": FiLMBody,
}

_FIXED = ("self", "obs_dim", "out_dim", "num_tasks", "hidden_sizes")


def _resolve(
    spec: str, hidden_sizes: tuple[int, ...]
) -> tuple[type[nn.Module], tuple[int, ...], dict[str, Any]]:
    plugins.load("mtrl.networks", NETWORKS, nn.Module)
    name, options = parse_spec(spec)
    plugins.require("mtrl.networks", name)
    body = lookup(NETWORKS, name, "network")
    width = options.pop("width", None)
    if width is not None:
        if not isinstance(width, int) or isinstance(width, bool) or width <= 0:
            raise ValueError(f"{name}: width must be a positive integer, got {width!r}")
        hidden_sizes = (width,) * len(hidden_sizes)
    check_options(name, body, options, fixed=_FIXED, extra=("width",))
    # Sizes bounded before a constructor runs: each counted option is that many modules (a body's
    # ``uncounted_options``, such as a loss threshold, are not sizes).
    uncounted = getattr(body, "uncounted_options", ())
    for option, value in (("width", width), *options.items()):
        if isinstance(value, int) and not isinstance(value, bool) and option not in uncounted:
            bound = limits.MAX_WIDTH if option == "width" else limits.MAX_NETWORK_OPTION
            limits.at_most(f"{name}: {option}", value, bound)
    return body, tuple(hidden_sizes), options


def make_network(
    spec: str,
    obs_dim: int,
    out_dim: int,
    num_tasks: int,
    hidden_sizes: tuple[int, ...],
    ensemble: int | None = None,
    embedding_dim: int = 0,
) -> nn.Module:
    """A body by spec; with ``ensemble=E``, E independent members stacked: [E, G, B, out]; with
    ``embedding_dim=D``, each reads a learned D-dim task embedding too (``TaskEmbedded``)."""
    body, hidden_sizes, options = _resolve(spec, hidden_sizes)

    def build() -> nn.Module:
        if not embedding_dim:
            return body(obs_dim, out_dim, num_tasks, hidden_sizes, **options)
        inner = body(obs_dim + embedding_dim, out_dim, num_tasks, hidden_sizes, **options)
        return TaskEmbedded(inner, num_tasks, embedding_dim)

    if ensemble is None:
        return build()
    return Ensemble([build() for _ in range(ensemble)])


def network_count(
    spec: str, obs_dim: int, out_dim: int, num_tasks: int, hidden_sizes: tuple[int, ...]
) -> int:
    """The parameter count of one body, read off the body itself built on the meta device
    (shapes only: no memory, no initialisation), so no formula restates a constructor."""
    body, hidden_sizes, options = _resolve(spec, hidden_sizes)
    with torch.device("meta"):
        module = body(obs_dim, out_dim, num_tasks, hidden_sizes, **options)
    return parameter_count(module)


def matched_width(
    spec: str,
    reference: int,
    obs_dim: int,
    out_dim: int,
    num_tasks: int,
    depth: int,
    widths: range = range(8, 2049),
) -> int:
    """The hidden width at which ``spec`` has the parameter count nearest ``reference`` (for
    comparisons at matched parameter counts, as the Meta-World+ study insists on). Counts grow
    with the width, so a bisection finds it in ~11 builds."""

    @functools.cache
    def count(width: int) -> int:
        return network_count(spec, obs_dim, out_dim, num_tasks, (width,) * depth)

    low, high = widths.start, widths.stop - 1
    while low < high:  # the first width whose count reaches the reference
        middle = (low + high) // 2
        low, high = (middle + 1, high) if count(middle) < reference else (low, middle)
    candidates = [w for w in (low - 1, low) if w in widths]
    return min(candidates, key=lambda w: abs(count(w) - reference))


def check_network(
    spec: str,
    hidden_sizes: tuple[int, ...] = (8, 8),
    num_tasks: int = 2,
    obs_dim: int | None = None,
    out_dim: int = 2,
) -> None:
    """Raises ValueError for an unknown name or option, an option value the body refuses, or a
    body of more than ``limits.MAX_BODY_PARAMETERS`` parameters (for ``obs_dim`` inputs, by
    default the one-hot and 4 features, and ``out_dim`` outputs)."""
    body, hidden_sizes, options = _resolve(spec, hidden_sizes)
    with torch.device("meta"):  # the constructor's checks and the shapes, no memory
        module = body(obs_dim or num_tasks + 4, out_dim, num_tasks, hidden_sizes, **options)
    count = parameter_count(module)
    if count > limits.MAX_BODY_PARAMETERS:
        raise ValueError(
            f"{spec.strip()} has {count:,} parameters; a body may have at most "
            f"{limits.MAX_BODY_PARAMETERS:,} parameters (mtrl.limits)"
        )


# Inputs assumed by the config check: a task's state and action beside the one-hot (Meta-World's
# are 39 and 4 wide, the widest mtrl builds by name).
CHECKED_STATE_AND_ACTION = 39 + 4


def check_sizes(key: str, spec: str, hidden_sizes: tuple[int, ...]) -> None:
    """A config key's network spec: its name and options, each size within ``mtrl.limits``,
    checked without building anything (``check_spec`` then builds it on the meta device)."""
    plugins.load("mtrl.networks", NETWORKS, nn.Module)
    check_registered(key, spec, NETWORKS, lambda s: _resolve(s, hidden_sizes))


def check_spec(
    key: str,
    spec: str,
    hidden_sizes: tuple[int, ...],
    num_tasks: int,
    init: str = "torch",
    out_dim: int = 2,
    embedding_dim: int = 0,
) -> None:
    """A config key's network spec (``agent.critic=mmoe:experts=4``) for these widths, tasks,
    outputs and task embedding, with the initialisation scheme it will get, or a one-line
    ConfigError."""
    plugins.load("mtrl.networks", NETWORKS, nn.Module)
    obs_dim = num_tasks + CHECKED_STATE_AND_ACTION + embedding_dim
    check_registered(
        key,
        spec,
        NETWORKS,
        lambda s: check_network(s, hidden_sizes, num_tasks, obs_dim, out_dim),
        lambda name: plugins.require("mtrl.networks", name, key),
    )
    name, _ = parse_spec(spec)
    if init != "torch" and name not in HE_UNIFORM_BODIES:
        raise ConfigError(
            f"agent.init={init} is defined for {', '.join(HE_UNIFORM_BODIES)} bodies, "
            f"not {key}={name}"
        )


def task_specific_names(module: nn.Module) -> set[str]:
    """Names of ``module``'s parameters that belong to single tasks (also inside ensembles)."""
    names = set()
    for prefix, sub in module.named_modules():
        prefixes = tuple(getattr(sub, "task_specific", ()))
        if not prefixes:
            continue
        for name, _ in sub.named_parameters():
            if name.startswith(prefixes):
                names.add(f"{prefix}.{name}" if prefix else name)
    return names


# Bodies whose output layer is known (``output_layer()``), so agent.init=he_uniform can scale it.
HE_UNIFORM_BODIES = ("shared", "multihead", "bronet", "simba")


def initialise(network: nn.Module, scheme: str, output_bound: float) -> None:
    """Re-initialises a body (or each member of an ensemble) by ``scheme`` (agent.init)."""
    if scheme == "torch":
        return
    members = network.members if isinstance(network, Ensemble) else [network]
    for member in members:
        if isinstance(member, TaskEmbedded):  # the embedding keeps its own initialisation
            member = member.body
        if not isinstance(member, tuple(NETWORKS[name] for name in HE_UNIFORM_BODIES)):
            raise ValueError(f"agent.init={scheme} is defined for {', '.join(HE_UNIFORM_BODIES)}")
        he_uniform_init(member, member.output_layer(), output_bound)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "HE_UNIFORM_BODIES",
    "NETWORKS",
    "bind_task_names",
    "initialise",
    "check_network",
    "make_network",
    "matched_width",
    "network_count",
    "parameter_count",
    "reset_diverging_tasks",
    "resettable_bodies",
    "running_norms",
    "task_specific_names",
    "update_running_norms",
]
