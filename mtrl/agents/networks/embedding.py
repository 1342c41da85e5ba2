"""A learned task embedding in front of any body (``agent.task_encoding=embedding``).

BRC (Nauman et al. 2025, naumix/BiggerRegularizedCategorical ``jaxrl/networks.py``) conditions its
critic on a learned 32-d vector per task, normalised to unit length, instead of the one-hot: tasks
that need similar values can get similar codes, and at width 4096 the code is what the first layer
reads, not T columns of its weight. Here the embedding is a task-specific parameter ([T, dim], the
task on dimension 0), so the per-task gradient pass hands each task only its own row and gradient
methods never combine it.

The code goes in beside the one-hot, which stays the last T features: the routed bodies
(multihead, task_routed, the experts' gates) read each group's task from it. For a fully shared
body the one-hot then adds T columns to the first layer, which at BRC's widths is ~0.1% of it.
Each network (actor, each twin critic) has its own embedding, learnt by its own loss; BRC's actor
reads the critic's instead (held fixed), a coupling our per-role gradient step does not make.
"""

from __future__ import annotations

import torch
from torch import nn

from mtrl.agents.networks.layers import task_index
from mtrl.config import AgentConfig


def embedding_dim(config: AgentConfig) -> int:
    """The width of the task embedding ``agent.task_encoding`` asks for; 0: the one-hot alone."""
    return config.task_embedding_dim if config.task_encoding == "embedding" else 0


class TaskEmbedded(nn.Module):
    """``body`` on [state, unit-norm embedding of the task, one-hot]."""

    task_specific = ("embedding",)

    def __init__(self, body: nn.Module, num_tasks: int, dim: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.embedding = nn.Parameter(torch.randn(num_tasks, dim))
        self.body = body

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, obs] (ending with the one-hot) -> [G, B, obs + dim], what the body reads."""
        if self.embedding.dim() == 1:  # one task's row (the per-task pass)
            code = self.embedding.expand(*x.shape[:-1], -1)
        else:
            code = self.embedding[task_index(x, self.num_tasks)]  # [G, dim]
            code = code.unsqueeze(1).expand(-1, x.shape[1], -1)  # [G, B, dim]
        code = code / code.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        one_hot = x[..., -self.num_tasks :]
        return torch.cat([x[..., : -self.num_tasks], code, one_hot], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.features(x))

    def output_layer(self) -> nn.Module:
        return self.body.output_layer()
