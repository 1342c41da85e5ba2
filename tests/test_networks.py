"""Actor/critic bodies: shapes, task isolation, gates, parameter counts, extraction, specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtrl.agents.networks import (
    NETWORKS,
    check_network,
    make_network,
    matched_width,
    network_count,
    parameter_count,
    task_specific_names,
)
from mtrl.agents.networks.experts import CGCBody, MMoEBody, PLEBody
from mtrl.agents.networks.soft_modular import SoftModularBody
from mtrl.agents.networks.task_routed import TaskRoutedBody
from mtrl.config import ConfigError, build_config
from mtrl.training.run import build_run_config

T, B, STATE, OUT = 4, 6, 5, 3
OBS = STATE + T
HIDDEN = (16, 12)
ONE_WIDTH = {"bronet", "simba"}  # residual bodies: one width throughout (skips add w to w)
NO_TASK_PARAMETERS = {"shared", "soft_modular", "bronet", "simba"}


def _hidden(name: str, hidden: tuple[int, ...] = HIDDEN) -> tuple[int, ...]:
    """The widths a registry-wide test builds ``name`` with: HIDDEN's first width throughout for
    the one-width bodies, so every body is covered at the same shapes otherwise."""
    return (hidden[0],) * len(hidden) if name in ONE_WIDTH else hidden


def _obs(groups: list[int], seed: int = 0) -> torch.Tensor:
    """[G, B, obs]: group g holds B rows of task groups[g]."""
    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(T)[groups].unsqueeze(1).expand(len(groups), B, T)
    return torch.cat([torch.randn(len(groups), B, STATE, generator=g), one_hot], -1)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_output_shapes_for_bodies_and_ensembles(name):
    body = make_network(name, OBS, OUT, T, _hidden(name))
    assert body(_obs([0, 1, 2, 3])).shape == (T, B, OUT)
    assert body(_obs([2])).shape == (1, B, OUT)
    ensemble = make_network(name, OBS, OUT, T, _hidden(name), ensemble=2)
    assert ensemble(_obs([3, 0])).shape == (2, 2, B, OUT)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_a_group_output_depends_only_on_its_own_task(name):
    """Rows of task 2 give the same outputs whatever other groups share the batch."""
    body = make_network(name, OBS, OUT, T, _hidden(name))
    alone = body(_obs([2]))
    mixed = body(torch.cat([_obs([0, 1]), _obs([2]), _obs([3])]))
    assert torch.allclose(mixed[2:3], alone, atol=1e-6)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_a_tasks_loss_leaves_other_tasks_parameters_untouched(name):
    body = make_network(name, OBS, OUT, T, _hidden(name))
    own = task_specific_names(body)
    if name in NO_TASK_PARAMETERS:
        assert not own  # nothing belongs to one task
        return
    assert own
    body(_obs([1])).pow(2).sum().backward()
    params = dict(body.named_parameters())
    used = 0
    for param_name in own:
        grad = params[param_name].grad
        assert params[param_name].shape[0] == T, param_name  # the task is dimension 0
        others = torch.cat([grad[:1], grad[2:]])
        assert others.abs().sum() == 0, param_name
        used += int(grad[1].abs().sum() > 0)
    assert used > 0  # task 1's own parameters do get its gradient


@pytest.mark.parametrize("body_cls", [MMoEBody, CGCBody])
def test_gates_are_distributions_over_experts(body_cls):
    body = body_cls(OBS, OUT, T, HIDDEN)
    gate = body.gate(_obs([0, 1, 2, 3]) * 5)
    assert (gate >= 0).all()
    assert torch.allclose(gate.sum(-1), torch.ones(T, B))
    assert not torch.allclose(gate[0], gate[1])  # each task its own gate


def test_ple_gates_and_soft_modular_routes_are_distributions():
    ple = PLEBody(OBS, OUT, T, HIDDEN, shared_experts=2, task_experts=2)
    x = _obs([0, 1, 2, 3])
    level = ple.levels[0]
    task = torch.arange(T)
    for logits in (level.task_gates(x, task), level.shared_gate(x)):
        gate = torch.softmax(logits, -1)
        assert gate.shape == (T, B, 4) and torch.allclose(gate.sum(-1), torch.ones(T, B))
    soft = SoftModularBody(OBS, OUT, T, (8, 8, 8), modules=3)
    routes = soft.routing(x)
    assert len(routes) == 2
    for weights in routes:
        assert weights.shape == (T, B, 3, 3)
        assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(T, B, 3))


def _linear(a: int, b: int) -> int:
    return (a + 1) * b


# Hand-written formulas for OBS = 9, OUT = 3, T = 4, HIDDEN = (16, 12).
HAND_COUNTS = {
    "shared": _linear(9, 16) + _linear(16, 12) + _linear(12, 3),
    "multihead": _linear(9, 16) + _linear(16, 12) + 4 * _linear(12, 3),
    "mmoe:experts=3": 3 * (_linear(9, 16) + _linear(16, 12))
    + 4 * _linear(9, 3)
    + 4 * _linear(12, 3),
    "cgc:shared_experts=2,task_experts=1": (2 + 4) * (_linear(9, 16) + _linear(16, 12))
    + 4 * _linear(9, 3)
    + 4 * _linear(12, 3),
    "ple:shared_experts=2,task_experts=1": (2 + 4) * _linear(9, 16)
    + 4 * _linear(9, 3)
    + _linear(9, 3)  # level 1: experts, task gates, shared gate
    + (2 + 4) * _linear(16, 12)
    + 4 * _linear(16, 3)  # level 2 (the last): no shared gate
    + 4 * _linear(12, 3),
    "soft_modular:modules=2": _linear(5, 16)
    + 4 * 16  # state and task embeddings
    + 2 * (_linear(16, 16) + _linear(16, 12))  # 2 module layers of 2 modules
    + _linear(16, 4)  # one routing step (2 x 2)
    + _linear(12, 3),
    "task_routed:route=sso": _linear(9, 16) + _linear(16, 12) + 4 * _linear(12, 3),
    "task_routed:route=sss/sso/oss/sss": _linear(9, 16) * 5 + _linear(16, 12) + _linear(12, 3) * 5,
    # A LayerNorm of width w has 2w parameters (gain and bias); RunningNorm has none (buffers).
    "shared:layer_norm=true": _linear(9, 16) + 2 * 16 + _linear(16, 12) + 2 * 12 + _linear(12, 3),
    "multihead:layer_norm=true": _linear(9, 16)
    + 2 * 16
    + _linear(16, 12)
    + 2 * 12
    + 4 * _linear(12, 3),
    "bronet:blocks=2,width=16": _linear(9, 16)
    + 2 * 16  # stem: Linear, LN
    + 2 * (2 * _linear(16, 16) + 2 * 2 * 16)  # blocks: 2 Linear + 2 LN each
    + _linear(16, 3),
    "simba:blocks=1,width=16": _linear(9, 16)
    + (2 * 16 + _linear(16, 64) + _linear(64, 16))  # block: LN, Linear up 4x, Linear down
    + 2 * 16  # final LN
    + _linear(16, 3),
}


@pytest.mark.parametrize("spec", sorted(HAND_COUNTS))
def test_parameter_counts_match_the_formula(spec):
    body = make_network(spec, OBS, OUT, T, HIDDEN)
    assert parameter_count(body) == HAND_COUNTS[spec]
    assert network_count(spec, OBS, OUT, T, HIDDEN) == HAND_COUNTS[spec]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_meta_device_count_is_the_built_networks_at_other_shapes(name):
    for obs, out, tasks, hidden in [(60, 1, 10, (40, 40, 40)), (20, 8, 3, _hidden(name, (7, 9)))]:
        body = make_network(name, obs, out, tasks, hidden)
        assert parameter_count(body) == network_count(name, obs, out, tasks, hidden)
    assert network_count(name, 60, 1, 10, (41, 41, 41)) > network_count(name, 60, 1, 10, (40,) * 3)


def test_matched_width_comes_within_one_percent():
    reference = network_count("shared", 53, 1, 10, (400, 400, 400))
    for name in NETWORKS:
        width = matched_width(name, reference, 53, 1, 10, 3)
        count = network_count(name, 53, 1, 10, (width,) * 3)
        assert abs(count / reference - 1) < 0.01, (name, width, count)


def test_task_routed_extracts_each_tasks_path_as_a_plain_mlp():
    body = TaskRoutedBody(OBS, OUT, T, HIDDEN, route="sos/oss/sss/soo")
    x = _obs([0, 1, 2, 3], seed=4)
    out = body(x)
    for task in range(T):
        path = body.extract(task)
        assert all(isinstance(m, (torch.nn.Linear, torch.nn.ReLU)) for m in path)
        assert parameter_count(path) == _linear(9, 16) + _linear(16, 12) + _linear(12, 3)
        assert torch.allclose(path(x[task]), out[task], atol=1e-6)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mmoe:experts=0", "experts must be a positive integer"),
        ("mmoe:towers=2", "unknown option towers"),
        ("cgc:width=-3", "width must be a positive integer"),
        ("task_routed:route=sx", "must be 3 letters of s/o"),
        ("task_routed:route=sso/sso", "give 1 or one per task"),
        ("soft_modular:modules=two", "modules must be a positive integer"),
        ("mixture", "unknown network 'mixture'"),
        ("bronet:blocks=0", "bronet: blocks must be a positive integer"),
        ("simba", r"simba: residual blocks need one width.*set width=N"),
        ("shared:layer_norm=x", "shared: layer_norm must be true or false, got 'x'"),
    ],
)
def test_bad_specs_fail_with_one_clear_line(spec, message):
    with pytest.raises(ValueError, match=message):
        make_network(spec, OBS, OUT, T, HIDDEN)


def test_config_validates_network_specs_up_front():
    with pytest.raises(ConfigError, match=r"agent.critic: mmoe: experts must be"):
        build_run_config(None, ["agent.critic=mmoe:experts=0"])
    with pytest.raises(ConfigError, match=r"agent.actor: unknown 'mmeo'.*mmoe"):
        build_run_config(None, ["agent.actor=mmeo"])
    config = build_config(None, ["agent.critic=ple:shared_experts=3,width=64"])
    assert config.agent.critic == "ple:shared_experts=3,width=64"
    check_network(config.agent.critic)


CONFIGS = Path(__file__).resolve().parent.parent / "mtrl" / "presets"
MATCHED = sorted(CONFIGS.glob("mt*/matched/*.yaml"))


@pytest.mark.parametrize("preset", MATCHED, ids=lambda p: f"{p.parent.parent.name}-{p.stem}")
def test_matched_presets_have_mt_sacs_parameter_count(preset):
    config = build_config(preset)
    reference = build_config(preset.parent.parent / "mt_sac.yaml")
    assert config.env == reference.env and config.total_steps == reference.total_steps
    tasks, obs = {"MT10": (10, 49), "MT50": (50, 89)}[config.env.name]
    hidden = config.agent.hidden_sizes
    for spec, ref_spec, inputs, outputs in [
        (config.agent.critic, reference.agent.critic, obs + 4, 1),
        (config.agent.actor, reference.agent.actor, obs, 8),
    ]:
        count = network_count(spec, inputs, outputs, tasks, hidden)
        expected = network_count(ref_spec, inputs, outputs, tasks, hidden)
        assert spec.split(":")[0] == preset.stem
        assert abs(count / expected - 1) < 0.015, (spec, count, expected)


def test_all_architectures_have_matched_presets_for_mt10_and_mt50():
    for env in ("mt10", "mt50"):
        names = {p.stem for p in MATCHED if p.parent.parent.name == env}
        # The residual bodies are compared at their own published widths, not matched to MT-SAC.
        assert names == set(NETWORKS) - {"shared"} - ONE_WIDTH
