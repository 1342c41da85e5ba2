"""GradDrop and FAMO, the two methods that do not fit the Gram-matrix mould: GradDrop reads the
task gradients coordinate by coordinate, FAMO learns from the losses after the step."""

from __future__ import annotations

import pytest
import torch

from mtrl import gradients
from mtrl.gradients.base import BlockAggregator, StepContext
from mtrl.gradients.famo import FAMO
from mtrl.gradients.graddrop import sign_dropout
from mtrl.training.checkpoint import load_checkpoint, save_checkpoint


def test_graddrop_keeps_each_coordinates_sign_by_its_purity_on_a_hand_computed_case():
    """Coordinate 0: +1, +3 (pure, P = 1): both kept, whatever U. Coordinate 1: +1, -3 (P = 1/4):
    U = 0.2 < P keeps the positive part, U = 0.9 > P the negative one. Coordinate 2: +2, -2
    (P = 1/2): U = 0.7 keeps the negative part."""
    block = torch.tensor([[1.0, 1.0, 2.0], [3.0, -3.0, -2.0]])
    assert torch.equal(
        sign_dropout(block, torch.tensor([0.99, 0.2, 0.7])), torch.tensor([2.0, 0.5, -1.0])
    )
    assert torch.equal(
        sign_dropout(block, torch.tensor([0.0, 0.9, 0.3])), torch.tensor([2.0, -1.5, 1.0])
    )


def test_graddrop_draws_per_coordinate_from_its_own_generator_and_round_trips(tmp_path):
    method = gradients.make("graddrop", 2, seed=3)
    J = torch.tensor([[1.0, 1.0, 2.0, 0.0], [3.0, -3.0, -2.0, 0.5]])
    first = method.combine(J, None, [("a.weight", 3), ("b.bias", 1)])
    expected = torch.rand(3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first[:3], sign_dropout(J[:, :3], expected))
    assert first[3] == 0.25  # one task's gradient, pure: kept, over T
    save_checkpoint(tmp_path / "m.pt", {"method": method.state_dict()})
    restored = gradients.make("graddrop", 2)
    restored.load_state_dict(load_checkpoint(tmp_path / "m.pt")["method"])
    assert torch.equal(restored.combine(J, None), method.combine(J, None))
    assert isinstance(method, BlockAggregator) and not hasattr(method, "weights")  # no task weights


def test_famo_weights_and_its_logit_step_on_a_hand_computed_case():
    """z = (1/2, 1/2), L = (1, 4): w = (z / L) / sum(z / L) = (0.8, 0.2). After the step
    L = (0.5, 4): delta = (log 2, 0), the softmax Jacobian at z gives d = (log 2 / 4, -log 2 / 4),
    and Adam's first step moves each logit by lr against its sign: xi = (-lr, +lr)."""
    method = FAMO(2, lr=0.025, decay=0.0)
    w = method.weights(torch.tensor([1.0, 4.0]), StepContext())
    assert torch.allclose(w, torch.tensor([0.8, 0.2]))
    method.after_step(torch.tensor([0.5, 4.0]))
    assert torch.allclose(method.logits.detach(), torch.tensor([-0.025, 0.025]), atol=1e-6)
    w = method.weights(torch.tensor([1.0, 1.0]), StepContext())
    z = torch.softmax(torch.tensor([-0.025, 0.025]), 0)
    assert (
        torch.allclose(w, z, atol=1e-6) and w[0] < w[1]
    )  # the task that improved fastest weighs less


def test_famo_state_round_trips_a_checkpoint(tmp_path):
    method = FAMO(3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        method.weights(torch.rand(3, generator=generator) + 0.1, StepContext())
        method.after_step(torch.rand(3, generator=generator) + 0.1)
    save_checkpoint(tmp_path / "m.pt", {"method": method.state_dict()})
    restored = FAMO(3)
    restored.load_state_dict(load_checkpoint(tmp_path / "m.pt")["method"])
    for _ in range(3):
        losses, after = (
            torch.rand(3, generator=generator) + 0.1,
            torch.rand(3, generator=generator) + 0.1,
        )
        ours = method.weights(losses, StepContext())
        assert torch.equal(restored.weights(losses, StepContext()), ours)
        method.after_step(after)
        restored.after_step(after)


@pytest.mark.parametrize("method", ["graddrop", "famo"])
def test_the_agent_takes_steps_with_them(method):
    from test_sac import T, _agent, _batch

    agent = _agent(critic_grad=method, actor_grad=method, diagnostics_every=2, compile=False)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    for seed in range(3):
        metrics = agent.update(_batch(seed=seed))
        assert all(torch.isfinite(v).all() for v in metrics.values()), method
    assert any(
        not torch.equal(b, p) for b, p in zip(before, agent.critic.parameters(), strict=True)
    )
    if method == "famo":
        assert not torch.equal(agent.critic_method.logits.detach(), torch.zeros(T))  # it learnt
