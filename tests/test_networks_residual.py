"""BroNet and SimBa bodies, RunningNorm, and the layer_norm option: the published layer order,
recomputed by hand from each module's own weights, and the running statistics against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from mtrl.agents.networks import (
    check_network,
    initialise,
    make_network,
    running_norms,
    update_running_norms,
)
from mtrl.agents.networks.residual import RunningNorm

T, B, OBS, OUT, W = 3, 5, 7, 2, 8


def _x(seed: int = 0, groups: int = T) -> torch.Tensor:
    """[G, B, obs]: random state features ending with group g's task one-hot."""
    g = torch.Generator().manual_seed(seed)
    one_hot = torch.eye(T)[torch.arange(groups) % T].unsqueeze(1).expand(groups, B, T)
    return torch.cat([3 * torch.randn(groups, B, OBS - T, generator=g) + 1, one_hot], -1)


def _wide(spec: str) -> str:
    """``spec`` at width W (the residual bodies need one width)."""
    return f"{spec}{',' if ':' in spec else ':'}width={W}"


def _perturb(body: nn.Module) -> nn.Module:
    """LayerNorm gains and biases away from 1 and 0, so an LN in the wrong place shows."""
    with torch.no_grad():
        for module in body.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-1.0, 1.0)
    return body


def _ln(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _lin(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return F.linear(x, layer.weight, layer.bias)


def _counts(body: nn.Module) -> tuple[int, int]:
    modules = list(body.modules())
    return sum(isinstance(m, nn.Linear) for m in modules), sum(
        isinstance(m, nn.LayerNorm) for m in modules
    )


@pytest.mark.parametrize("blocks", [1, 3])
def test_bronet_is_dense_ln_relu_then_post_ln_residual_blocks(blocks):
    body = _perturb(make_network(f"bronet:blocks={blocks},width={W}", OBS, OUT, T, (W,)))
    assert _counts(body) == (2 + 2 * blocks, 1 + 2 * blocks)
    x = _x()
    h = F.relu(_ln(_lin(x, body.stem[0]), body.stem[1]))
    for block in body.blocks:
        dense1, ln1, _, dense2, ln2 = block.net
        h = h + _ln(_lin(F.relu(_ln(_lin(h, dense1), ln1)), dense2), ln2)
    assert torch.allclose(body(x), _lin(h, body.output), atol=1e-5)
    assert body.output_layer() is body.output


@pytest.mark.parametrize("blocks", [1, 3])
def test_simba_is_rsnorm_dense_pre_ln_blocks_and_a_final_ln(blocks):
    body = _perturb(make_network(f"simba:blocks={blocks},width={W}", OBS, OUT, T, (W, W)))
    assert _counts(body) == (2 + 2 * blocks, 1 + blocks)
    assert body.blocks[0].net[1].out_features == 4 * W  # the inverted bottleneck
    update_running_norms(body, _x(seed=1))
    x = _x()
    norm = body.norm
    h = _lin((x - norm.mean.float()) / (norm.var.float() + norm.eps).sqrt(), body.stem)
    for block in body.blocks:
        ln, up, _, down = block.net
        h = h + _lin(F.relu(_lin(_ln(h, ln), up)), down)
    expected = _lin(_ln(h, body.final_norm), body.output)
    assert torch.allclose(body(x), expected, atol=1e-5)
    assert body.output_layer() is body.output


@pytest.mark.parametrize("name", ["shared", "multihead"])
def test_layer_norm_puts_an_ln_after_each_hidden_linear(name):
    body = _perturb(make_network(f"{name}:layer_norm=true", OBS, OUT, T, (W, 6)))
    stack = body.net if name == "shared" else body.trunk
    hidden = [m for m in stack if isinstance(m, nn.Linear)][:2]
    norms = [m for m in stack if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 and body.output_layer() is (
        stack[-1] if name == "shared" else body.heads
    )
    x = _x()
    h = x
    for layer, norm in zip(hidden, norms, strict=True):
        h = F.relu(_ln(_lin(h, layer), norm))
    if name == "shared":
        out = _lin(h, stack[-1])
    else:  # group g uses task g's head
        out = torch.einsum("gbi,gio->gbo", h, body.heads.weight) + body.heads.bias[:, None]
    assert torch.allclose(body(x), out, atol=1e-5)
    plain = make_network(name, OBS, OUT, T, (W, 6))
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.modules())


def test_running_norm_matches_numpy_over_a_stream_of_batches():
    norm = RunningNorm(4)
    x = torch.randn(2, 3, 4)
    assert torch.equal(norm(x), x)  # the identity before any update
    rng = np.random.default_rng(0)
    seen = []
    for size in (1, 7, 2, 50, 3):
        batch = rng.normal(5.0, 3.0, size=(size, 4)) * [1, 10, 0.1, 1]
        seen.append(batch)
        norm.update(torch.as_tensor(batch, dtype=torch.float32).reshape(size, 1, 4))
    data = np.concatenate(seen).astype(np.float32).astype(np.float64)
    assert np.allclose(norm.mean.numpy(), data.mean(0), rtol=1e-12)
    assert np.allclose(norm.var.numpy(), data.var(0), rtol=1e-12)
    assert norm.count.item() == len(data)
    assert not list(norm.parameters())  # buffers: gradient methods never see them
    with pytest.raises(ValueError, match="RunningNorm of 4 features got 3"):
        norm.update(torch.zeros(2, 3))


def test_running_norm_leaves_out_rows_that_are_not_finite():
    """One NaN observation must not turn the statistics (and so every later action) NaN."""
    x = torch.randn(8, 4, dtype=torch.float64)
    x[2] = float("nan")
    x[5, 1] = float("inf")  # one bad feature spoils its whole row
    norm, reference = RunningNorm(4), RunningNorm(4)
    norm.update(x)
    reference.update(x[[0, 1, 3, 4, 6, 7]])
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(norm, name), getattr(reference, name)), name
    norm.update(torch.full((2, 1, 4), float("nan")))  # nothing finite: nothing changes
    assert torch.equal(norm.count, reference.count) and torch.isfinite(norm.var).all()


def test_running_statistics_round_trip_and_reach_ensemble_members():
    critic = make_network(f"simba:width={W}", OBS, OUT, T, (W,), ensemble=2)
    update_running_norms(critic, _x(seed=2))
    assert running_norms(critic) == [m.norm for m in critic.members]
    assert not running_norms(make_network(_wide("bronet"), OBS, OUT, T, (W,)))
    for member in critic.members:
        assert member.norm.count.item() == T * B
    copy = make_network(f"simba:width={W}", OBS, OUT, T, (W,), ensemble=2)
    copy.load_state_dict(critic.state_dict())
    assert torch.equal(copy(_x()), critic(_x()))
    assert {"members.0.norm.mean", "members.1.norm.count"} <= set(critic.state_dict())
    # Normalising every feature alone keeps each group's output a function of its own rows.
    body = critic.members[0]
    assert torch.allclose(body(_x()[1:2]), body(_x())[1:2], atol=1e-6)


@pytest.mark.parametrize("spec", ["shared:layer_norm=true", "bronet", "simba"])
def test_he_uniform_initialise_reaches_linears_and_leaves_norms(spec):
    critic = make_network(_wide(spec), OBS, 1, T, (W, W), ensemble=2)
    initialise(critic, "he_uniform", 1e-3)
    for member in critic.members:
        out = member.output_layer()
        assert out.weight.abs().max() <= 1e-3 and out.bias.abs().max() <= 1e-3
        for module in member.modules():
            if isinstance(module, nn.Linear) and module is not out:
                assert module.bias.eq(0).all()
                assert module.weight.abs().max() <= (6 / module.in_features) ** 0.5
            if isinstance(module, nn.LayerNorm):
                assert module.weight.eq(1).all() and module.bias.eq(0).all()


@pytest.mark.parametrize("name", ["bronet", "simba", "shared:layer_norm=true"])
def test_per_task_gradients_by_vmap_match_each_tasks_own_backward(name):
    body = make_network(_wide(name), OBS, OUT, T, (W, W))
    update_running_norms(body, _x(seed=3))
    params = {k: v.detach() for k, v in body.named_parameters()}

    def loss(p, x):  # x [B, obs], one task's rows
        return functional_call(body, p, (x,)).pow(2).mean()

    x = _x()
    per_task = vmap(grad(loss), in_dims=(None, 0))(params, x)  # {name: [T, ...]}
    live = dict(body.named_parameters())
    for task in range(T):
        expected = torch.autograd.grad(loss(live, x[task]), list(live.values()))
        for key, value in zip(params, expected, strict=True):
            assert torch.allclose(per_task[key][task], value, atol=1e-6), (name, key)


@pytest.mark.parametrize(
    "spec, hidden, message",
    [
        ("bronet:blocks=0", (W,), "bronet: blocks must be a positive integer, got 0"),
        ("simba:blocks=two", (W,), "simba: blocks must be a positive integer, got 'two'"),
        (
            "bronet",
            (16, 12),
            r"bronet: residual blocks need one width, got .*\(16, 12\); set width",
        ),
        ("shared:layer_norm=x", (W,), "shared: layer_norm must be true or false, got 'x'"),
        ("multihead:layer_norm=1", (W,), "multihead: layer_norm must be true or false, got 1"),
    ],
)
def test_bad_options_fail_with_one_value_error_line(spec, hidden, message):
    with pytest.raises(ValueError, match=message) as error:
        check_network(spec, hidden)  # on the meta device, as the config check builds it
    assert "\n" not in str(error.value)
