"""agent.precision=bf16: the networks' passes in bfloat16, everything that accumulates in fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sac import _agent, _batch
from test_train import _final_success, _run

from mtrl.agents.networks import NETWORKS
from mtrl.agents.networks.paco import CompositionalLinear
from mtrl.gradients import GRADIENT_METHODS
from mtrl.training.logging import read_metrics
from mtrl.training.session import read_run_info

SPECS = {"bronet": "bronet:width=16", "simba": "simba:width=16,blocks=1"}


def _matmul_dtypes(agent) -> list[torch.dtype]:
    """The output dtype of every Linear (and PaCo's composed layer) the next update runs
    (recorded by forward hooks)."""
    seen: list[torch.dtype] = []
    for module in [*agent.actor.modules(), *agent.critic.modules()]:
        if isinstance(module, (torch.nn.Linear, CompositionalLinear)):
            module.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_network_runs_its_matmuls_in_bf16_and_keeps_fp32_state(network):
    spec = SPECS.get(network, network)
    fp32 = _agent(actor=spec, critic=spec)
    bf16 = _agent(actor=spec, critic=spec, precision="bf16")
    seen = _matmul_dtypes(bf16)
    torch.manual_seed(1)  # the same policy noise for both updates
    reference = fp32.update(_batch())
    torch.manual_seed(1)
    metrics = bf16.update(_batch())
    assert seen and set(seen) == {torch.bfloat16}
    assert bf16.skipped_updates == 0 and all(torch.isfinite(v).all() for v in metrics.values())
    # The same update to bf16's ~3 significant digits.
    for key in ("losses/critic", "charts/q_mean"):
        assert metrics[key].dtype == torch.float32
        assert metrics[key].item() == pytest.approx(reference[key].item(), rel=0.05, abs=0.05)
    for optimizer in (bf16.critic_optimizer, bf16.actor_optimizer):
        for group in optimizer.param_groups:
            for param in group["params"]:
                assert param.dtype == torch.float32  # master weights
                assert optimizer.state[param]["exp_avg"].dtype == torch.float32
    assert bf16.log_alpha.dtype == torch.float32


@pytest.mark.parametrize("network", [*sorted(NETWORKS), "multihead:layer_norm=true"])
def test_every_network_takes_bf16_steps_through_the_per_task_pass(network):
    """PCGrad's per-task vmap pass under bf16 autocast (LayerNorm's backward failed there on a
    bf16 input: layers.LayerNorm normalises in fp32)."""
    spec = SPECS.get(network, network)
    agent = _agent(
        actor=spec, critic=spec, precision="bf16", critic_grad="pcgrad", actor_grad="pcgrad"
    )
    metrics = agent.update(_batch())
    assert agent.skipped_updates == 0
    assert all(torch.isfinite(v).all() for v in metrics.values())


@pytest.mark.parametrize("method", sorted(GRADIENT_METHODS))
def test_every_gradient_method_takes_finite_bf16_steps(method):
    agent = _agent(precision="bf16", critic_grad=method, actor_grad=method, diagnostics_every=2)
    for _ in range(2):  # the second update is a diagnostic one: the curvature's passes too
        metrics = agent.update(_batch())
    assert agent.skipped_updates == 0
    assert all(torch.isfinite(v).all() for v in metrics.values())


def test_auto_is_bf16_exactly_where_the_device_runs_it_natively():
    agent = _agent(precision="auto")
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert agent.precision == ("bf16" if native else "fp32")
    assert _agent().precision == "fp32"


def test_a_resume_may_switch_precision(tmp_path):
    common = ["warmup_steps=60", "log_every=50", "eval_every=0", "final_eval_episodes=1"]
    _run(tmp_path / "run", [*common, "total_steps=100", "checkpoint_every=100"])
    assert read_run_info(tmp_path / "run")["precision"] == "fp32"
    _run(tmp_path / "run", ["total_steps=200", "agent.precision=bf16"], resume=True)
    train = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert train[-1]["step"] == 200 and np.isfinite(train[-1]["losses/critic"])
    assert read_run_info(tmp_path / "run")["precision"] == "bf16"  # run.json says what ran


def test_bf16_mt_sac_solves_the_four_conflicting_tasks(tmp_path):
    """Learning parity on the synthetic tasks (seed 0; fp32's bar, >= 90% mean success)."""
    finals = _final_success(tmp_path, 1, ["agent.precision=bf16"])
    assert np.mean(finals) >= 0.9, finals


def test_compiled_bf16_passes_take_the_eager_bf16_steps():
    """bf16 autocast inside the compiled per-task pass and TD target (agent.compile, the default;
    the compiled mean pass is the same function without vmap)."""
    kwargs = {"precision": "bf16", "critic_grad": "pcgrad", "actor_grad": "pcgrad"}
    compiled, eager = _agent(**kwargs), _agent(**kwargs, compile=False)
    with torch._dynamo.config.patch(disable=False):
        for seed in range(2):
            for agent in (compiled, eager):
                torch.manual_seed(seed)
                agent.update(_batch(seed=seed))
    assert all(hasattr(p, "_torchdynamo_orig_callable") for p in compiled.passes.functions.values())
    assert compiled.skipped_updates == 0
    for a, b in zip(compiled.critic.parameters(), eager.critic.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-3)  # bf16 rounding may differ between the two kernels
