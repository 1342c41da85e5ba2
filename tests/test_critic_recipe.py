"""The 2025 critic recipe inside multi-task SAC: distributional critics, task embeddings, resets,
reward normalisation, each composed with the per-task gradient pass, and all of them together
resuming exactly from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import assert_one_line_error, mtrl
from test_sac import OBS, A, B, T, _agent, _batch
from test_train import _comparable
from test_train import _run as _train

from mtrl.agents.networks import task_specific_names
from mtrl.training.logging import read_metrics

CONFIGS = Path(__file__).resolve().parent.parent / "mtrl" / "presets"


def _finite(metrics: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in metrics.values())


@pytest.mark.parametrize("loss", ["hl_gauss", "categorical"])
@pytest.mark.parametrize("method", ["mean", "pcgrad"])
def test_distributional_critics_update_with_every_kind_of_step(loss, method):
    agent = _agent(critic_loss=loss, bins=11, critic_grad=method, actor_grad=method)
    batch = _batch()
    assert agent.critic(torch.cat([batch.action, batch.obs], -1)).shape == (2, T, B, 11)
    for _ in range(3):
        metrics = agent.update(_batch())
        assert _finite(metrics)
    assert agent.skipped_updates == 0


@pytest.mark.parametrize("loss", ["mse", "hl_gauss", "categorical"])
@pytest.mark.parametrize("method", ["mean", "pcgrad"])
def test_a_nan_reward_skips_the_update_with_every_critic_loss(loss, method):
    """A NaN reward makes the target non-finite: the update is skipped and counted, whatever the
    loss (the categorical projection must not turn NaN into a scatter index)."""
    agent = _agent(critic_loss=loss, bins=11, critic_grad=method, actor_grad=method)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    batch = _batch()
    batch.reward[1, 3] = float("nan")
    agent.update(batch)
    assert agent.skipped_updates == 1
    assert all(torch.equal(b, p) for b, p in zip(before, agent.critic.parameters(), strict=True))
    agent.update(_batch(seed=1))  # a finite batch steps again
    assert agent.skipped_updates == 1 and agent.consecutive_skipped == 0


def test_non_finite_env_steps_are_left_out_of_running_statistics_and_counted():
    """A NaN observation (SimBa's input norms) or reward (reward_norm) is not learnt from: the
    policy's actions stay finite, the factors too, and each such task step is counted once."""
    agent = _agent(actor="simba:width=16", critic="simba:width=16", reward_norm="scale")
    obs = _batch().obs[:, 0].numpy()  # [T, obs]
    action, reward = np.zeros((T, A)), np.ones(T)
    done = np.zeros(T, dtype=bool)
    agent.observe_step(obs, action, reward, done, done)
    bad_obs, bad_reward = obs.copy(), reward.copy()
    bad_obs[0, 1] = np.nan  # task 0's observation
    bad_reward[1] = np.inf  # task 1's reward
    agent.observe_step(bad_obs, action, bad_reward, done, done)
    bad_obs[2, 0] = np.nan  # task 0 and 2's observations, with task 2's reward: 2 steps
    bad_reward[1], bad_reward[2] = 1.0, np.nan
    agent.observe_step(bad_obs, action, bad_reward, done, done)
    assert agent.nonfinite_inputs == 4
    assert np.isfinite(agent.act(obs, deterministic=True)).all()
    agent.reward_norm.refresh()
    assert torch.equal(agent.reward_norm.factor(torch.ones(T)), torch.ones(T))
    other = _agent(actor="simba:width=16", critic="simba:width=16", reward_norm="scale")
    other.load_state_dict(agent.state_dict())
    assert other.nonfinite_inputs == 4


def test_categorical_target_is_a_distribution_and_terminal_targets_sit_at_the_reward():
    agent = _agent(critic_loss="categorical", bins=21, v_min=-5.0, v_max=5.0)
    batch = _batch(terminated=1.0)
    target = agent.td_target(batch)  # [T, B, bins]
    assert target.shape == (*batch.reward.shape, 21)
    assert torch.allclose(target.sum(-1), torch.ones_like(batch.reward), atol=1e-5)
    mean = (target * agent.readout.values).sum(
        -1
    )  # the projection keeps the mean inside the support
    assert torch.allclose(mean, batch.reward.clamp(-5, 5), atol=1e-4)


def test_hl_gauss_critic_reads_q_as_the_expected_bin_centre():
    agent = _agent(critic_loss="hl_gauss", bins=11, v_min=-1.0, v_max=1.0)
    out = torch.zeros(2, T, 3, 11)  # uniform logits: Q is the mean of the centres, 0
    assert torch.allclose(agent.readout.q(out), torch.zeros(2, T, 3), atol=1e-6)
    out[..., -1] = 50.0  # all mass on the last bin: its centre, 1 - 1/11
    assert torch.allclose(agent.readout.q(out), torch.full((2, T, 3), 1 - 1 / 11), atol=1e-5)


def test_task_embedding_is_task_specific_unit_norm_and_learnt_per_task():
    agent = _agent(task_encoding="embedding", task_embedding_dim=8, critic_grad="pcgrad")
    names = task_specific_names(agent.critic)
    assert {"members.0.embedding", "members.1.embedding"} <= names
    assert "body.embedding" in task_specific_names(agent.actor)
    embedding = agent.critic.members[0].embedding
    assert embedding.shape == (T, 8)
    features = agent.critic.members[0].features(_batch().obs.new_zeros(T, 2, OBS + A))
    # Zero state with the one-hot zeroed too reads task 0's code everywhere: it has unit norm.
    assert torch.allclose(
        features[..., OBS + A - T : OBS + A - T + 8].norm(dim=-1), torch.ones(T, 2)
    )
    before = embedding.detach().clone()
    agent.update(_batch())
    assert not torch.equal(before, embedding.detach())  # pcgrad's per-task pass reached it


def test_a_reset_restores_fresh_parameters_and_optimiser_state_on_schedule():
    agent = _agent(reset_every=3)
    initial = [p.detach().clone() for p in agent.critic.parameters()]
    for _ in range(2):
        agent.update(_batch())
    assert agent.resets == 0 and agent.critic_optimizer.state
    trained = [p.detach().clone() for p in agent.critic.parameters()]
    log_alpha = agent.log_alpha.detach().clone()
    agent.update(_batch())  # the third update, then the reset
    assert agent.resets == 1
    assert not agent.critic_optimizer.state and not agent.actor_optimizer.state
    now = list(agent.critic.parameters())
    for fresh, old, first in zip(now, trained, initial, strict=True):
        assert not torch.equal(fresh, old)
        assert not torch.equal(fresh, first)  # a new draw, not the first initialisation again
    # A fresh draw has the initialiser's scale: nn.Linear's uniform(+-1/sqrt(fan_in)).
    first_layer = agent.critic.members[0].net[0]
    bound = 1 / np.sqrt(first_layer.weight.shape[1])
    assert first_layer.weight.abs().max() <= bound
    assert first_layer.weight.std().item() == pytest.approx(bound / np.sqrt(3), rel=0.1)
    for target, param in zip(agent.critic_target.parameters(), now, strict=True):
        assert torch.equal(target, param)
    assert not torch.equal(agent.log_alpha, log_alpha - 1)  # temperatures are kept (and learn)
    agent.update(_batch())  # the optimisers start again from nothing and step fine
    assert agent.resets == 1 and agent.skipped_updates == 0


RECIPE = [
    "env.name=synthetic-scaled:3",
    "agent.actor=simba:blocks=1,width=16",
    "agent.critic=bronet:blocks=1,width=24",
    "agent.critic_loss=categorical",
    "agent.bins=11",
    "agent.task_encoding=embedding",
    "agent.task_embedding_dim=4",
    "agent.reward_norm=returns",
    "agent.weight_decay=1e-4",
    "agent.reset_every=70",
    "agent.reset_warmup=5",
    "agent.critic_grad=pcgrad",
    "updates_per_step=2",
]


# The options the recipe above does not use, in a second run: HL-Gauss, ARS's scale (refreshed at
# each reset), LayerNorm-ed multi-head bodies, one update per step.
OTHER_OPTIONS = [
    "env.name=synthetic-scaled:3",
    "agent.actor=shared:layer_norm=true",
    "agent.critic=multihead:layer_norm=true",
    "agent.critic_loss=hl_gauss",
    "agent.bins=11",
    "agent.v_min=-50",
    "agent.v_max=50",
    "agent.reward_norm=scale",
    "agent.reset_every=140",
    "agent.reset_warmup=5",
]


def _split_and_whole(tmp_path: Path, options: list[str]) -> tuple[list[dict], list[dict]]:
    """The same run straight through and interrupted at its checkpoint, then resumed."""
    common = [
        *options,
        "deterministic=true",
        "checkpoint_replay=true",
        "warmup_steps=60",
        "checkpoint_every=100",
        "eval_every=100",
        "log_every=25",
        "final_eval_episodes=2",
        "agent.batch_size_per_task=8",
        "agent.hidden_sizes=[16,16]",
    ]
    _train(tmp_path / "whole", [*common, "total_steps=200"])
    _train(tmp_path / "split", [*common, "total_steps=100"])
    _train(tmp_path / "split", ["total_steps=200"], resume=True)
    whole, split = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "split")
    assert _comparable(split) == _comparable(whole)
    assert [r for r in split if r["kind"] == "event"] == [r for r in whole if r["kind"] == "event"]
    assert json.loads((tmp_path / "split" / "run.json").read_text())["status"] == "finished"
    return whole, split


def test_the_whole_recipe_resumes_exactly_and_logs_its_resets(tmp_path):
    whole, _ = _split_and_whole(tmp_path, RECIPE)
    events = [r for r in whole if r["kind"] == "event"]
    # 280 updates over 140 update steps, plus 5 warm-up updates after each reset.
    assert [r["events/reset"] for r in events] == [1.0, 2.0, 3.0, 4.0]
    train = [r for r in whole if r["kind"] == "train"]
    factors = [train[-1][f"tasks/point-{i}/reward_factor"] for i in range(3)]
    assert factors[0] > factors[1] > factors[2]  # task i's rewards were 10^i larger


def test_the_other_options_resume_exactly(tmp_path):
    whole, _ = _split_and_whole(tmp_path, OTHER_OPTIONS)
    train = [r for r in whole if r["kind"] == "train"]
    factors = [train[-1][f"tasks/point-{i}/reward_factor"] for i in range(3)]
    assert factors[0] / factors[2] == pytest.approx(100, rel=0.5)  # ~1 / mean |r|: 10^0 vs 10^2
    assert [r["events/reset"] for r in whole if r["kind"] == "event"] == [1.0]


@pytest.mark.metaworld
def test_the_brc_preset_trains_on_metaworld_evaluates_and_refuses_a_bad_support(tmp_path):
    """BRC's MT10 preset as shipped (only shrunk: widths, batch, steps), on a real Meta-World task
    (every preset, MT50's included, is validated in test_config)."""
    suite = "mt10"
    run_dir = tmp_path / "run"
    shrink = [
        "env.name=MT1:reach-v3",
        "env.max_episode_steps=30",  # episodes finish, so the reward normaliser has extents
        "agent.actor=bronet:blocks=1,width=16",
        "agent.critic=bronet:blocks=2,width=32",
        "agent.batch_size_per_task=16",
        "replay_capacity_per_task=1000",
        "warmup_steps=40",
        "total_steps=80",
        "eval_every=0",
        "final_eval_episodes=1",
        "checkpoint_every=80",
        "log_every=20",
    ]
    mtrl("train", "--config", f"{suite}/brc", f"run_dir={run_dir}", *shrink)
    config = (run_dir / "config.yaml").read_text()
    assert "critic_loss: categorical" in config and "reward_norm: returns" in config
    train = [r for r in read_metrics(run_dir) if r["kind"] == "train" and "losses/critic" in r]
    assert train and all(np.isfinite(r["losses/critic"]) for r in train)
    assert 0 < train[-1]["tasks/reach-v3/reward_factor"] < 1  # returns of ~100s scaled to ~10
    evaluated = mtrl("eval", str(run_dir), "--episodes", "1")  # the saved policy loads and acts
    assert "reach-v3" in evaluated.stdout
    assert_one_line_error(
        mtrl("train", "--config", f"{suite}/brc", "agent.v_min=10", check=False),
        "agent.v_min",
    )


@pytest.mark.parametrize("method", ["gradnorm", "uncertainty", "dwa", "famo", "nash_mtl"])
def test_a_nan_reward_leaves_a_stateful_methods_state_as_it_was(method):
    """A method that learns from the losses (GradNorm's initial losses, uncertainty's variances,
    DWA's history, FAMO's weights) is not called on the skipped update's non-finite losses: the
    finite updates after it step, instead of every later one being skipped."""
    agent = _agent(critic_grad=method)
    agent.update(_batch())
    bad = _batch(seed=2)
    bad.reward[1, 3] = float("nan")
    agent.update(bad)
    assert agent.skipped_updates == 1
    for seed in range(3, 8):
        agent.update(_batch(seed=seed))
    assert agent.skipped_updates == 1
