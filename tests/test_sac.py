"""Multi-task SAC: targets, per-task temperatures, head isolation, state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl.agents.networks import NETWORKS
from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import AgentConfig
from mtrl.gradients import GradientMethod, GramWeighting
from mtrl.training.replay import Batch

T, B, STATE, A = 3, 8, 5, 2


class GramMean(GramWeighting):
    """The mean's weights as a Gram weighting: the mean through the per-task pass."""

    def weights(self, gram_matrix, task_losses, context):
        return torch.full((self.num_tasks,), 1.0 / self.num_tasks, dtype=gram_matrix.dtype)


OBS = STATE + T


def _batch(terminated: float = 0.0, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(T).unsqueeze(1).expand(T, B, T)
    obs = torch.cat([torch.randn(T, B, STATE, generator=g), one_hot], -1)
    next_obs = torch.cat([torch.randn(T, B, STATE, generator=g), one_hot], -1)
    return Batch(
        obs=obs,
        action=torch.rand(T, B, A, generator=g) * 2 - 1,
        reward=torch.randn(T, B, generator=g),
        next_obs=next_obs,
        terminated=torch.full((T, B), terminated),
    )


def _agent(**kwargs) -> MultiTaskSAC:
    torch.manual_seed(0)
    return MultiTaskSAC(OBS, A, T, AgentConfig(hidden_sizes=(16, 16), **kwargs))


def test_termination_cuts_the_target_and_truncation_bootstraps():
    agent = _agent()
    torch.manual_seed(1)
    terminal = agent.td_target(_batch(terminated=1.0))
    torch.manual_seed(1)
    bootstrapped = agent.td_target(_batch(terminated=0.0))
    reward = _batch().reward
    assert torch.allclose(terminal, reward)
    assert not torch.allclose(bootstrapped, reward)


def test_actions_are_bounded_and_deterministic_mode_is_repeatable():
    agent = _agent()
    obs = _batch().obs[:, 0].numpy()  # [T, obs]
    actions = agent.act(obs * 100)
    assert actions.shape == (T, A) and np.all(np.abs(actions) <= 1.0)
    assert np.array_equal(agent.act(obs, deterministic=True), agent.act(obs, deterministic=True))


def test_log_probability_matches_the_squashed_gaussian_density():
    agent = _agent()
    obs = _batch().obs  # [T, B, obs]
    torch.manual_seed(3)
    action, log_prob = agent.actor.sample(obs)
    mean, log_std = agent.actor(obs)
    pre_tanh = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
    gaussian = torch.distributions.Normal(mean, log_std.exp()).log_prob(pre_tanh).sum(-1)
    expected = gaussian - torch.log(1 - action.pow(2) + 1e-12).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-3)


def test_each_task_has_its_own_temperature():
    agent = _agent(alpha_lr=0.1)
    assert agent.log_alpha.shape == (T,)
    for seed in range(5):
        agent.update(_batch(seed=seed))
    alphas = agent.log_alpha.detach()
    assert torch.isfinite(alphas).all()
    assert not torch.allclose(alphas, alphas[0].expand(T))  # they move independently


def test_update_changes_networks_and_polyak_moves_targets_slowly():
    agent = _agent(tau=0.01)
    before = [p.clone() for p in agent.critic.parameters()]
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    metrics = agent.update(_batch())
    for name in ("losses/critic", "losses/actor", "losses/alpha"):
        assert torch.isfinite(metrics[name])
    moved = [(a - b).abs().max() for a, b in zip(agent.critic.parameters(), before, strict=True)]
    target_moved = [
        (a - b).abs().max()
        for a, b in zip(agent.critic_target.parameters(), target_before, strict=True)
    ]
    assert max(moved) > 0
    assert 0 < max(target_moved) < max(moved)


def test_state_dict_round_trip_restores_the_policy():
    agent = _agent()
    for seed in range(3):
        agent.update(_batch(seed=seed))
    other = _agent()
    other.load_state_dict(agent.state_dict())
    obs = _batch().obs[:, 0].numpy()
    assert np.array_equal(agent.act(obs, deterministic=True), other.act(obs, deterministic=True))
    assert torch.equal(agent.log_alpha, other.log_alpha)


def _task_slice(params: dict, dims: dict, task: int) -> dict:
    return {n: p[task] if dims[n] == 0 else p for n, p in params.items()}


def _loop_gradients(losses_fn, params: dict, dims: dict, batch: tuple, fixed=None) -> dict:
    """Per-task gradients with one autograd pass per task on its own rows: the reference for the
    engine's vmap pass. ``fixed`` is a task's slice of parameters the loss goes through."""
    per_task = []
    for i in range(T):
        leaves = {
            n: p.detach().clone().requires_grad_(True)
            for n, p in _task_slice(params, dims, i).items()
        }
        rows = [x[i : i + 1] for x in batch]
        losses, _ = losses_fn(leaves, *rows, *([fixed[i]] if fixed else []))
        grads = torch.autograd.grad(losses[0], list(leaves.values()))
        per_task.append(dict(zip(leaves, grads, strict=True)))
    return {n: torch.stack([g[n] for g in per_task]) for n in params}


@pytest.mark.parametrize("network", ["shared", "multihead", "mmoe", "task_routed"])
def test_vmap_per_task_gradients_equal_a_per_task_autograd_loop(network):
    agent = _agent(actor=network, critic=network)
    batch = _batch()
    critic_batch = (batch.obs, batch.action, agent.td_target(batch))
    vmapped, _ = agent.critic_step.per_task_gradients(agent.critic_losses, critic_batch)
    critic_params, critic_dims = agent.critic_step.task_params()
    looped = _loop_gradients(agent.critic_losses, critic_params, critic_dims, critic_batch)
    for name in critic_params:
        assert vmapped[name].shape == looped[name].shape, name
        assert torch.allclose(vmapped[name], looped[name], atol=1e-5), name

    actor_batch = (batch.obs, torch.randn(T, B, A), torch.rand(T))
    vmapped, _ = agent.actor_step.per_task_gradients(
        agent.actor_losses, actor_batch, (agent.critic_step,)
    )
    actor_params, actor_dims = agent.actor_step.task_params()
    critic_slices = [_task_slice(critic_params, critic_dims, i) for i in range(T)]
    looped = _loop_gradients(
        agent.actor_losses, actor_params, actor_dims, actor_batch, critic_slices
    )
    for name in actor_params:
        assert torch.allclose(vmapped[name], looped[name], atol=1e-5), name


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_mean_through_the_per_task_pass_equals_the_single_backward(network):
    """The vmap path with `mean` and the one-backward fast path take the same step."""
    fast, per_task = _agent(actor=network, critic=network), _agent(actor=network, critic=network)
    per_task.critic_step.method = GramMean(T)  # the same weights, through the per-task pass
    per_task.actor_step.method = GramMean(T)
    for seed in range(3):
        for agent in (fast, per_task):
            torch.manual_seed(seed)
            agent.update(_batch(seed=seed))
    for a, b in zip(fast.critic.parameters(), per_task.critic.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(fast.actor.parameters(), per_task.actor.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_pcgrad_leaves_task_heads_with_their_own_gradient():
    """Only shared parameters are combined: a head's step is its own task's gradient."""
    agent = _agent(critic="multihead", critic_grad="pcgrad")
    batch = _batch()
    grads, (losses, _) = agent.critic_step.per_task_gradients(
        agent.critic_losses, (batch.obs, batch.action, agent.td_target(batch))
    )
    gram_matrix, m = agent.critic_step.apply(grads, losses)
    head = agent.critic.members[0].heads.weight.grad  # [T, hidden, out]
    assert grads["members.0.heads.weight"].shape == (T, 16, 1)  # one slice per task, no T x T
    assert torch.allclose(head, grads["members.0.heads.weight"] / T)
    assert gram_matrix.shape == (T, T) and torch.isfinite(gram_matrix).all()
    assert m["per_task/critic_weight"].shape == (T,)


@pytest.mark.parametrize("method", ["pcgrad", "pcgrad_dir", "pcgrad_mag"])
def test_update_runs_with_every_surgery_method(method):
    agent = _agent(critic_grad=method, actor_grad=method, diagnostics_every=2)
    for seed in range(2):
        metrics = agent.update(_batch(seed=seed))
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert "gradients/actor/conflict_fraction" in metrics


@pytest.mark.parametrize(
    "bad_value, loss_value, steps",
    [
        (float("inf"), 1.0, False),
        (float("nan"), 1.0, False),
        (3e38, 1.0, True),
        (1.0, float("nan"), False),
    ],
)
def test_the_optimizer_step_is_skipped_exactly_when_a_gradient_or_loss_is_non_finite(
    bad_value, loss_value, steps
):
    agent = _agent()
    params = list(agent.critic.parameters())
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    params[2].grad[0, 0] = bad_value  # one element of one parameter: finite-but-huge still steps
    losses = torch.tensor([1.0, loss_value, 2.0])
    assert agent.critic_step.optimizer_step(losses) is steps
    moved = [not torch.equal(b, p) for b, p in zip(before, params, strict=True)]
    assert all(moved) if steps else not any(moved)
    assert (params[2].grad is None) is (not steps)


@pytest.mark.parametrize("method", ["mean", "pcgrad"])
@pytest.mark.parametrize("network", ["shared", "multihead"])
def test_compiled_gradient_passes_take_the_eager_steps(network, method):
    """The default (agent.compile): the mean loss's or the per-task pass compiled once per loss
    and reused; the same steps as plain autograd (mean) or the eager vmap pass (pcgrad)."""
    kwargs = {"actor": network, "critic": network, "critic_grad": method, "actor_grad": method}
    compiled, eager = _agent(**kwargs), _agent(**kwargs, compile=False)
    with torch._dynamo.config.patch(disable=False):
        for seed in range(3):
            for agent in (compiled, eager):
                torch.manual_seed(seed)
                agent.update(_batch(seed=seed))
    kind = "mean" if method == "mean" else "task"
    assert set(compiled.passes.functions) == {
        f"_critic_{kind}_loss",
        f"_actor_{kind}_loss",
        "_soft_td_target",
    }
    assert not any(name.endswith("_mean_loss") for name in eager.passes.functions)  # plain autograd
    assert not any(
        hasattr(p, "_torchdynamo_orig_callable") for p in eager.passes.functions.values()
    )
    assert all(hasattr(p, "_torchdynamo_orig_callable") for p in compiled.passes.functions.values())
    for a, b in zip(compiled.critic.parameters(), eager.critic.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    for a, b in zip(compiled.actor.parameters(), eager.actor.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_a_failing_compile_falls_back_to_the_eager_pass_with_a_warning(monkeypatch):
    def broken(fn, **kwargs):
        def fails(*args):
            raise RuntimeError("no C++ compiler")

        return fails

    monkeypatch.setattr(torch, "compile", broken)
    agent, eager = _agent(critic_grad="pcgrad"), _agent(critic_grad="pcgrad", compile=False)
    with (
        torch._dynamo.config.patch(disable=False),
        pytest.warns(UserWarning, match="torch.compile of _critic_task_loss failed"),
    ):
        torch.manual_seed(0)
        agent.update(_batch())
    torch.manual_seed(0)
    eager.update(_batch())
    for a, b in zip(agent.critic.parameters(), eager.critic.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("body", ["shared", "multihead"])
def test_he_uniform_init_and_adam_eps_follow_mclean_et_al(body):
    """agent.init=he_uniform: hidden weights U(+-sqrt(6 / fan_in)) (variance 2 / fan_in), zero
    biases, outputs U(+-1e-3) (actor) and U(+-3e-3) (critic); agent.adam_eps reaches every Adam."""
    torch.manual_seed(0)
    config = AgentConfig(
        actor=body, critic=body, hidden_sizes=(512, 512), init="he_uniform", adam_eps=1e-5
    )
    agent = MultiTaskSAC(OBS, A, T, config)
    actor = agent.actor.body
    hidden = actor.net[2] if body == "shared" else actor.trunk[2]  # the 512 -> 512 layer
    bound = (6.0 / 512) ** 0.5
    assert hidden.weight.abs().max() <= bound and hidden.weight.abs().max() > 0.95 * bound
    assert hidden.weight.var().item() == pytest.approx(2.0 / 512, rel=0.02)
    assert hidden.bias.abs().max() == 0
    actor_out = actor.output_layer()
    critic_out = agent.critic.members[1].output_layer()
    assert actor_out.weight.abs().max() <= 1e-3 and actor_out.bias.abs().max() <= 1e-3
    assert critic_out.weight.abs().max() <= 3e-3 and critic_out.weight.abs().max() > 2e-3
    for optimizer in (agent.actor_optimizer, agent.critic_optimizer, agent.alpha_optimizer):
        assert optimizer.defaults["eps"] == 1e-5
    default = MultiTaskSAC(OBS, A, T, AgentConfig(actor=body, hidden_sizes=(512, 512)))
    torch_bound = 1 / 512**0.5  # nn.Linear's own initialisation is kept by default
    layer = default.actor.body.net[2] if body == "shared" else default.actor.body.trunk[2]
    assert layer.weight.abs().max() <= torch_bound and layer.bias.abs().max() > 0


def test_he_uniform_init_is_refused_for_bodies_without_a_known_output_layer():
    from mtrl.config import ConfigError
    from mtrl.training.run import build_run_config

    with pytest.raises(ConfigError, match="agent.init=he_uniform is defined for shared, multihead"):
        build_run_config(None, ["env.name=synthetic", "agent.init=he_uniform", "agent.critic=mmoe"])


def test_log_std_bounds_clip_as_mclean_et_al_or_map_through_tanh():
    """agent.log_std_bound: "clip" clamps the head's log std (a fresh He-uniform head gives ~0,
    std ~1, as McLean et al.'s code); "tanh" maps it into the bounds (a fresh head: the midpoint,
    -9 for [-20, 2])."""
    torch.manual_seed(0)
    obs = torch.randn(T, 16, OBS)
    bounds = {"log_std_min": -20.0, "log_std_max": 2.0, "init": "he_uniform"}
    clip = MultiTaskSAC(OBS, A, T, AgentConfig(log_std_bound="clip", **bounds)).actor
    tanh = MultiTaskSAC(OBS, A, T, AgentConfig(log_std_bound="tanh", **bounds)).actor
    tanh.load_state_dict(clip.state_dict())  # the same head, two readings of its output
    _, clipped = clip(obs)
    _, mapped = tanh(obs)
    assert clipped.abs().max() < 0.05
    assert (mapped + 9.0).abs().max() < 0.5
    with torch.no_grad():  # a head far out of range: clip sits on the bounds
        clip.body.output_layer().bias.fill_(50.0)
        assert torch.all(clip(obs)[1] == 2.0)
        clip.body.output_layer().bias.fill_(-50.0)
        assert torch.all(clip(obs)[1] == -20.0)


class BeforeTheKinds(GradientMethod):
    """A user's method written against the contract before the kinds (docs/plugins.md)."""

    def weights(self, gram_matrix, task_losses, context):
        return torch.softmax(gram_matrix.diagonal(), 0)


def test_a_direct_gradient_method_subclass_is_a_gram_weighting(monkeypatch):
    from mtrl import gradients

    monkeypatch.setitem(gradients.GRADIENT_METHODS, "before_the_kinds", BeforeTheKinds)
    J = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    expected = torch.softmax(torch.tensor([1.0, 4.0], dtype=torch.float64), 0) @ J
    assert torch.allclose(gradients.make("before_the_kinds", 2).combine(J, None), expected)
    agent = _agent(critic_grad="before_the_kinds", diagnostics_every=0, compile=False)
    metrics = agent.update(_batch(seed=0))
    assert "per_task/critic_weight" in metrics  # its weights came from the per-task pass
