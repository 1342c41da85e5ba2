"""Residual bodies that scale with width: BroNet (``bronet``) and SimBa (``simba``).

Plain MLPs stop improving (and start diverging) as single-task SAC critics are made wider; the
2024-25 answer is normalised residual blocks. BRO (Nauman et al., NeurIPS 2024, "Bigger,
Regularized, Optimistic") and BRC (Nauman et al. 2025, which trains one such critic on MT10/MT50)
use BroNet: Dense -> LN -> ReLU, then blocks x + LN(Dense(ReLU(LN(Dense(x))))) (checked against
naumix/BiggerRegularizedCategorical ``jaxrl/networks.py``). SimBa (Lee et al., ICLR 2025,
"SimBa: Simplicity Bias for Scaling Up Parameters in Deep RL"; SonyResearch/simba
``scale_rl/networks/layers.py``, ``agents/sac/sac_network.py``) normalises the input with running
statistics, then pre-LN blocks x + Dense(ReLU(Dense4x(LN(x)))) and a final LN. Both are fully
shared (``task_specific = ()``) and have one width throughout (the skips add w to w).

SimBa's running statistics are buffers, not parameters: gradient methods never see them, they
travel in ``state_dict``, and the agent merges each env step's inputs into them with
``update_running_norms`` (outside any gradient pass). SimBa normalises only observations; here the
whole body input is (the critic's includes the action, both include the task one-hot, which is
harmless: routed bodies read the task from the raw input, and SimBa needs no task).
"""

from __future__ import annotations

import torch
from torch import nn

from mtrl.agents.networks.embedding import TaskEmbedded
from mtrl.agents.networks.layers import Ensemble, LayerNorm, positive


def _one_width(name: str, hidden_sizes: tuple[int, ...]) -> int:
    if not hidden_sizes or len(set(hidden_sizes)) != 1:
        raise ValueError(
            f"{name}: residual blocks need one width, got hidden_sizes {tuple(hidden_sizes)}; "
            "set width=N"
        )
    return hidden_sizes[0]


class RunningNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) per feature, with statistics of every input merged so far
    (SimBa's RSNorm). The identity until the first ``update`` (mean 0, var 1, count 0). Kept in
    float64: the count passes 2^24 rows within an MT50 run, where float32 stops counting."""

    def __init__(self, features: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        # torch.zeros/ones follow the default device, so under torch.device("meta") these are
        # shapes only, like the parameters.
        self.register_buffer("mean", torch.zeros(features, dtype=torch.float64))  # [d]
        self.register_buffer("var", torch.ones(features, dtype=torch.float64))  # [d]
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))  # rows seen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d] -> [..., d], in x's dtype."""
        scale = (self.var + self.eps).rsqrt()
        return (x - self.mean.to(x.dtype)) * scale.to(x.dtype)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Merges the rows of x [..., d] (Chan et al.'s parallel mean/variance update); exact
        population statistics of everything seen, whatever the batch sizes. Rows with a NaN or
        infinite feature are left out: one would make the statistics, and so every later output
        of the body, NaN for good (the agent counts them)."""
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"RunningNorm of {self.mean.shape[0]} features got {x.shape[-1]}")
        rows = x.detach().reshape(-1, x.shape[-1]).to(self.mean)  # [N, d] float64
        rows = rows[rows.isfinite().all(-1)]
        n = rows.shape[0]
        if n == 0:
            return
        batch_mean = rows.mean(0)
        batch_var = rows.var(0, correction=0)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean.add_(delta * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)


def running_norms(module: nn.Module) -> list[RunningNorm]:
    """Every RunningNorm in ``module`` (ensemble members included); empty for most bodies."""
    return [sub for sub in module.modules() if isinstance(sub, RunningNorm)]


def update_running_norms(module: nn.Module, x: torch.Tensor) -> None:
    """Merges x [..., d] (what the body reads) into every RunningNorm in ``module``; a no-op for
    bodies without one."""
    if isinstance(module, Ensemble):
        for member in module.members:
            update_running_norms(member, x)
    elif isinstance(module, TaskEmbedded):  # its body reads [state, code, one-hot]
        with torch.no_grad():
            update_running_norms(module.body, module.features(x))
    else:
        for norm in running_norms(module):
            norm.update(x)


class BroNetBlock(nn.Module):
    """x + LN(Linear(ReLU(LN(Linear(x))))): [..., w] -> [..., w]."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, width),
            LayerNorm(width),
            nn.ReLU(),
            nn.Linear(width, width),
            LayerNorm(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class _ResidualBody(nn.Module):
    """What BroNet and SimBa share: one width, ``blocks`` residual blocks, a linear output."""

    task_specific: tuple[str, ...] = ()
    name = ""

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        blocks: int = 2,
    ) -> None:
        super().__init__()
        positive(self.name, blocks=blocks)
        width = _one_width(self.name, hidden_sizes)
        self.build(obs_dim, width, blocks)
        self.output = nn.Linear(width, out_dim)

    def build(self, obs_dim: int, width: int, blocks: int) -> None:
        raise NotImplementedError

    def output_layer(self) -> nn.Module:
        return self.output


class BroNetBody(_ResidualBody):
    """BroNet: Linear -> LN -> ReLU, ``blocks`` BroNet blocks, a linear output layer."""

    name = "bronet"

    def build(self, obs_dim: int, width: int, blocks: int) -> None:
        self.stem = nn.Sequential(nn.Linear(obs_dim, width), LayerNorm(width), nn.ReLU())
        self.blocks = nn.Sequential(*(BroNetBlock(width) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, obs] -> [G, B, out]."""
        return self.output(self.blocks(self.stem(x)))


class SimbaBlock(nn.Module):
    """x + Linear(ReLU(Linear(LN(x)))), the inner layer 4w wide: [..., w] -> [..., w]."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            LayerNorm(width),
            nn.Linear(width, 4 * width),
            nn.ReLU(),
            nn.Linear(4 * width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class SimbaBody(_ResidualBody):
    """SimBa: running input norm, Linear, ``blocks`` SimBa blocks, LN, a linear output layer."""

    name = "simba"

    def build(self, obs_dim: int, width: int, blocks: int) -> None:
        self.norm = RunningNorm(obs_dim)
        self.stem = nn.Linear(obs_dim, width)
        self.blocks = nn.Sequential(*(SimbaBlock(width) for _ in range(blocks)))
        self.final_norm = LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, obs] -> [G, B, out]."""
        return self.output(self.final_norm(self.blocks(self.stem(self.norm(x)))))
