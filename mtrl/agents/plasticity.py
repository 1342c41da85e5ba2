"""Plasticity diagnostics of actor and critic: dormant units, effective rank, weight and feature norms.

McLean et al. 2025 (their Fig. 4) track how networks lose plasticity as training goes on, and find
that more tasks lose less. Their code (rainx0r/mtrl, ``mtrl/monitoring/metrics.py``) measures it as
here, on the networks' hidden activations over a replay batch:

- a unit's tau-dormant score (Sokar et al. 2023, Eq. 1) is its mean |activation| over the batch
  divided by the mean of those scores over its layer; the unit is dormant if the score is <= tau,
  and the fraction is pooled over every hidden unit of the network (``agent.dormant_threshold``;
  their code's default, 0.1);
- the effective rank is srank_delta (Kumar et al. 2021) of the last hidden layer's features
  [N, D]: the fewest singular values that hold 1 - delta of their sum, delta = 0.01 (not the
  entropy-based erank);
- the weight norm is the L2 norm of all the network's parameters; the feature norm is the mean L2
  norm of a sample's last hidden features.

Hidden units are the outputs of the bodies' ``nn.ReLU`` modules; the last hidden features are the
input of a body's ``output_layer()``, else its last ReLU's output. Bodies that apply ReLU as a
function (the expert, soft-modular and task-routed bodies) log only their weight norm.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from mtrl.agents.networks.layers import Ensemble

# McLean et al.'s delta of srank (rainx0r/mtrl's ``compute_srank``), as in Kumar et al. 2021.
SRANK_DELTA = 0.01
EPS = 1e-9


def dormant_scores(activations: torch.Tensor) -> torch.Tensor:
    """[N, U] activations -> [U] tau-dormant scores: each unit's mean |activation| over the N
    samples over the layer's mean of those (1 for a layer where every unit is alike)."""
    score = activations.abs().mean(0)
    return score / (score.mean() + EPS)


def dormant_fraction(layers: list[torch.Tensor], threshold: float) -> torch.Tensor:
    """The share of all units of ``layers`` (each [N, U_l]) whose dormant score is <= threshold."""
    dormant = torch.stack([(dormant_scores(layer) <= threshold).sum() for layer in layers])
    return dormant.sum().float() / sum(layer.shape[-1] for layer in layers)


def effective_rank(features: torch.Tensor, delta: float = SRANK_DELTA) -> torch.Tensor:
    """srank_delta of [N, D] features: the least k whose k largest singular values sum to at
    least (1 - delta) of all of them; 0 for all-zero features."""
    singular = torch.linalg.svdvals(features.float())  # descending
    total = singular.sum()
    held = singular.cumsum(0) >= (1 - delta) * total
    rank = held.int().argmax() + 1  # the first k that holds enough
    return torch.where(total > 0, rank, torch.zeros_like(rank)).float()


def weight_norm(module: nn.Module) -> torch.Tensor:
    """The L2 norm of all of ``module``'s parameters together."""
    return torch.linalg.vector_norm(torch.stack([p.detach().norm() for p in module.parameters()]))


def feature_norm(features: torch.Tensor) -> torch.Tensor:
    """The mean over the N samples of a sample's L2 norm, for [N, D] features."""
    return features.float().norm(dim=-1).mean()


class _Recorded:
    """One body's hidden activations of a forward pass, flattened to [N, units]."""

    def __init__(self) -> None:
        self.units: list[torch.Tensor] = []  # every ReLU module's output, in call order
        self.last_hidden: torch.Tensor | None = None  # the output layer's input

    @property
    def features(self) -> torch.Tensor | None:
        """The last hidden layer's features: the output layer's input, else the last ReLU's."""
        if self.last_hidden is not None:
            return self.last_hidden
        return self.units[-1] if self.units else None


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().float().reshape(-1, tensor.shape[-1])


@contextlib.contextmanager
def recording(module: nn.Module) -> Iterator[list[_Recorded]]:
    """Forward hooks on ``module``'s bodies (an ensemble's members, else the module itself) that
    record each one's hidden activations while inside; the hooks are gone after."""
    bodies = list(module.members) if isinstance(module, Ensemble) else [module]
    records = [_Recorded() for _ in bodies]
    handles = []
    for body, record in zip(bodies, records, strict=True):

        def keep_unit(_module, _inputs, output, record=record):
            record.units.append(_flat(output))

        def keep_last(_module, inputs, record=record):
            record.last_hidden = _flat(inputs[0])

        handles += [m.register_forward_hook(keep_unit) for m in body.modules() if _is_relu(m)]
        output_layer = getattr(body, "output_layer", None)
        if callable(output_layer):
            handles.append(output_layer().register_forward_pre_hook(keep_last))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def _is_relu(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU)


def network_metrics(
    role: str, module: nn.Module, records: list[_Recorded], threshold: float
) -> dict[str, torch.Tensor]:
    """``plasticity/<role>/...`` scalars of one network from its bodies' recorded activations:
    the dormant fraction pooled over every body's units, the effective rank and feature norm
    averaged over the bodies (the twin critics), and the weight norm of the whole network."""
    metrics = {f"plasticity/{role}/weight_norm": weight_norm(module)}
    units = [unit for record in records for unit in record.units]
    if units:
        metrics[f"plasticity/{role}/dormant_fraction"] = dormant_fraction(units, threshold)
    features = [record.features for record in records if record.features is not None]
    if features:
        ranks = torch.stack([effective_rank(f) for f in features])
        metrics[f"plasticity/{role}/effective_rank"] = ranks.mean()
        norms = torch.stack([feature_norm(f) for f in features])
        metrics[f"plasticity/{role}/feature_norm"] = norms.mean()
    return metrics


@torch.no_grad()
def plasticity_metrics(
    actor: nn.Module, critic: nn.Module, obs: torch.Tensor, threshold: float
) -> dict[str, torch.Tensor]:
    """Actor and critic metrics on a replay batch's observations [T, B, obs] (fp32, no host
    sync). The critic reads the actor's deterministic actions there, tanh of its mean, so that
    no random draw shifts training's random stream."""
    with recording(actor.body) as actor_records:
        mean, _ = actor(obs)
    with recording(critic) as critic_records:
        critic(torch.cat([torch.tanh(mean), obs], -1))
    return network_metrics("actor", actor, actor_records, threshold) | network_metrics(
        "critic", critic, critic_records, threshold
    )
