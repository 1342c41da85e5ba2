"""Plasticity diagnostics: dormant units and effective rank against hand-computed values, the
hooks on every body kind, and the keys in a short run's metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtrl.agents.plasticity import (
    dormant_fraction,
    dormant_scores,
    effective_rank,
    feature_norm,
    plasticity_metrics,
)
from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import AgentConfig, build_config
from mtrl.errors import ConfigError
from mtrl.training.logging import read_metrics
from mtrl.training.trainer import Trainer

CONFIGS = Path(__file__).resolve().parent.parent / "mtrl" / "presets"


def test_dormant_scores_and_fraction_by_hand():
    # Unit means of |a|: 2, 0.1, 0.9, 1 -> layer mean 1, scores 2, 0.1, 0.9, 1.
    layer = torch.tensor([[2.0, 0.0, 0.9, -1.0], [-2.0, 0.2, 0.9, 1.0]])
    assert torch.allclose(dormant_scores(layer), torch.tensor([2.0, 0.1, 0.9, 1.0]))
    assert dormant_fraction([layer], 0.1) == pytest.approx(1 / 4)  # <= tau counts
    assert dormant_fraction([layer], 0.09) == 0.0
    # A second layer of 2 units, one silent: pooled, 2 of 6 units are dormant.
    silent = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
    assert dormant_fraction([layer, silent], 0.1) == pytest.approx(2 / 6)


def test_effective_rank_by_hand():
    # Singular values 10, 1, 0.05: 10 + 1 = 11 of 11.05 is 99.55% >= 99% -> srank 2; with
    # delta 0.001 (99.9%) all three are needed.
    features = torch.diag(torch.tensor([10.0, 1.0, 0.05]))
    assert effective_rank(features) == 2
    assert effective_rank(features, delta=0.001) == 3
    # Rank one however many rows; all-zero features have rank 0.
    assert effective_rank(torch.ones(6, 4)) == 1
    assert effective_rank(torch.zeros(5, 3)) == 0
    assert feature_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0]])) == pytest.approx(3.0)


def _obs(num_tasks: int, state: int, batch: int) -> torch.Tensor:
    one_hot = torch.eye(num_tasks).unsqueeze(1).expand(num_tasks, batch, num_tasks)
    return torch.cat([torch.randn(num_tasks, batch, state), one_hot], -1)


@pytest.mark.parametrize("body", ["shared", "multihead", "bronet:width=16", "simba:width=16"])
def test_the_metrics_of_bodies_with_an_output_layer(body):
    torch.manual_seed(0)
    config = AgentConfig(hidden_sizes=(16, 16), actor=body, critic=body)
    agent = MultiTaskSAC(5 + 3, 2, 3, config)
    metrics = plasticity_metrics(agent.actor, agent.critic, _obs(3, 5, 8), 0.1)
    for role in ("actor", "critic"):
        for name in ("dormant_fraction", "effective_rank", "weight_norm", "feature_norm"):
            assert torch.isfinite(metrics[f"plasticity/{role}/{name}"]), (role, name)
        assert 0 <= metrics[f"plasticity/{role}/dormant_fraction"] <= 1
        assert 1 <= metrics[f"plasticity/{role}/effective_rank"] <= 16
    # The hooks are gone after: nothing is recorded by a later forward pass.
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in agent.critic.modules())


def test_a_silenced_layer_is_all_dormant_and_rank_zero():
    """A critic whose last hidden layer outputs zeros: its units are dormant (half of the twin
    critics' last-layer units; the first layers stay alive) and its features have rank 0."""
    torch.manual_seed(0)
    agent = MultiTaskSAC(5 + 3, 2, 3, AgentConfig(hidden_sizes=(16, 16)))
    with torch.no_grad():
        for member in agent.critic.members:
            last = member.net[2]  # Linear, ReLU, [Linear], ReLU, Linear
            last.weight.zero_()
            last.bias.fill_(-1.0)
    metrics = plasticity_metrics(agent.actor, agent.critic, _obs(3, 5, 8), 0.1)
    assert metrics["plasticity/critic/effective_rank"] == 0
    assert metrics["plasticity/critic/dormant_fraction"] >= 0.5


def test_dormant_threshold_must_be_below_one():
    with pytest.raises(ConfigError, match=r"agent.dormant_threshold: must be in \[0, 1\)"):
        build_config(CONFIGS / "synthetic.yaml", ["agent.dormant_threshold=1"])


def test_a_short_run_logs_the_plasticity_keys(tmp_path):
    config = build_config(
        CONFIGS / "synthetic.yaml",
        [
            "total_steps=300",
            "warmup_steps=100",
            "log_every=100",
            "eval_every=0",
            "final_eval_episodes=1",
            "agent.hidden_sizes=[16,16]",
            "agent.compile=false",
            "agent.diagnostics_every=50",
            f"run_dir={tmp_path}",
            "progress=false",
        ],
    )
    trainer = Trainer(config, tmp_path)
    try:
        trainer.train()
    finally:
        trainer.close()
    logged = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    diagnosed = [r for r in logged if "plasticity/critic/dormant_fraction" in r]
    assert diagnosed, [sorted(r) for r in logged]
    for role in ("actor", "critic"):
        for name in ("dormant_fraction", "effective_rank", "weight_norm", "feature_norm"):
            assert f"plasticity/{role}/{name}" in diagnosed[-1]
