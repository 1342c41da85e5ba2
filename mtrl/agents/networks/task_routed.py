"""Task-routed paths: per layer, each task takes either the shared layer or its own (the
task-granular path choice of Baidu's UFO supernet, Xi et al. 2022), so one task's sub-network is a
plain MLP that can be cut out and deployed alone (``extract``).

The route is a string of ``s`` (shared) / ``o`` (own) per layer, hidden layers then the output
layer: ``"ssoo"`` for 3 hidden layers shares the first two and gives every task its own third layer
and output. Give one pattern for all tasks, or T patterns separated by ``/``. A layer where some task
goes its own way holds an own slice for every task (so the per-task pass can hand each task its
slice); the slices of tasks that share that layer are never used and get no gradient.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from mtrl.agents.networks.layers import TaskLinear, task_index


def parse_route(route: str, num_tasks: int, num_layers: int) -> torch.Tensor:
    """``"ssoo"`` or ``"ssoo/ssso/..."`` -> bool [T, L], True where a task takes its own layer."""
    patterns = str(route).strip().split("/")
    if len(patterns) == 1:
        patterns *= num_tasks
    if len(patterns) != num_tasks:
        raise ValueError(
            f"task_routed: route has {len(patterns)} patterns; give 1 or one per task ({num_tasks})"
        )
    for pattern in patterns:
        if len(pattern) != num_layers or set(pattern) - {"s", "o"}:
            raise ValueError(
                f"task_routed: route pattern {pattern!r} must be {num_layers} letters of s/o "
                "(hidden layers then output)"
            )
    return torch.tensor([[c == "o" for c in pattern] for pattern in patterns])


class TaskRoutedBody(nn.Module):
    task_specific = ("own.",)

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        route: str | None = None,
    ) -> None:
        super().__init__()
        num_layers = len(hidden_sizes) + 1
        route = route or "s" * (num_layers - 2) + "oo"  # default: own last hidden layer and output
        self.num_tasks = num_tasks
        with torch.device("cpu"):  # the routing decides the layers, also when built on "meta"
            own_layer = parse_route(route, num_tasks, num_layers)  # [T, L]
        self.register_buffer("own_layer", own_layer)
        widths = (obs_dim, *hidden_sizes, out_dim)
        pairs = list(pairwise(widths))
        uses_own, uses_shared = own_layer.any(0).tolist(), (~own_layer).any(0).tolist()  # [L]
        self.shared = nn.ModuleList(
            nn.Linear(a, b) if uses_shared[k] else nn.Identity() for k, (a, b) in enumerate(pairs)
        )
        self.own = nn.ModuleList(
            TaskLinear(num_tasks, a, b) if uses_own[k] else nn.Identity()
            for k, (a, b) in enumerate(pairs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task = task_index(x, self.num_tasks)
        own_layer = self.own_layer[task]  # [G, L]
        last = len(self.shared) - 1
        for k, (shared, own) in enumerate(zip(self.shared, self.own, strict=True)):
            if isinstance(own, nn.Identity):
                x = shared(x)
            elif isinstance(shared, nn.Identity):
                x = own(x, task)
            else:  # tasks differ at this layer: each group keeps its own route's output
                x = torch.where(own_layer[:, k, None, None], own(x, task), shared(x))
            if k < last:
                x = torch.relu(x)
        return x

    @torch.no_grad()
    def extract(self, task: int) -> nn.Sequential:
        """Task ``task``'s path as a plain MLP (Linear/ReLU) with the same outputs on its rows."""
        layers: list[nn.Module] = []
        for k, (shared, own) in enumerate(zip(self.shared, self.own, strict=True)):
            if bool(self.own_layer[task, k]):
                linear = nn.Linear(*own.weight.shape[1:])
                linear.weight.copy_(own.weight[task].T)
                linear.bias.copy_(own.bias[task])
            else:
                linear = nn.Linear(shared.in_features, shared.out_features)
                linear.load_state_dict(shared.state_dict())
            layers += [linear, nn.ReLU()]
        return nn.Sequential(*layers[:-1])
