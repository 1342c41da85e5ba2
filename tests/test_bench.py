"""The throughput benchmark's FLOP count, checked against a hand count and against torch's own."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtrl.agents.networks import make_network
from mtrl.experiments.bench import mlp_flops, update_flops


def test_mlp_flops_by_hand():
    # 3 rows through 5 -> 4 -> 2: 2 * 3 * (5 * 4 + 4 * 2) = 168
    assert mlp_flops(3, (5, 4, 2)) == 168


def test_update_flops_match_torchs_count_of_the_forward_passes():
    """The formula's forward terms equal torch's FLOP counter on the real networks."""
    obs, tasks, hidden, batch = 12, 3, (16, 8), 5
    rows = tasks * batch
    actor = make_network("shared", obs, 8, tasks, hidden)
    critic = make_network("shared", obs + 4, 1, tasks, hidden)
    with FlopCounterMode(display=False) as counter:
        actor(torch.randn(tasks, batch, obs))
    assert counter.get_total_flops() == mlp_flops(rows, (obs, *hidden, 8))
    with FlopCounterMode(display=False) as counter:
        critic(torch.randn(tasks, batch, obs + 4))
    critic_forward = counter.get_total_flops()
    assert critic_forward == mlp_flops(rows, (obs + 4, *hidden, 1))
    actor_forward = mlp_flops(rows, (obs, *hidden, 8))
    assert update_flops(obs, tasks, hidden, batch) == 4 * actor_forward + 12 * critic_forward
