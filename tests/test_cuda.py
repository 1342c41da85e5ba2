"""The CUDA path: batches through pinned memory, the update and a short run on the GPU. Skipped
where no GPU is present (CI, this project's CPU machine); run on a GPU machine with
``python -m pytest -q tests/test_cuda.py``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import AgentConfig, build_config
from mtrl.training.replay import TaskReplay
from mtrl.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CONFIGS = Path(__file__).resolve().parent.parent / "mtrl" / "presets"


def _replay(seed: int) -> TaskReplay:
    replay = TaskReplay(num_tasks=3, obs_dim=4, action_dim=2, capacity_per_task=50, seed=seed)
    rng = np.random.default_rng(0)
    for _ in range(30):
        replay.add(
            rng.normal(size=(3, 4)), rng.normal(size=(3, 2)), rng.normal(size=3),
            rng.normal(size=(3, 4)), np.zeros(3),
        )  # fmt: skip
    return replay


def test_cuda_batches_equal_cpu_batches_batch_after_batch():
    on_cpu, on_gpu = _replay(seed=1), _replay(seed=1)
    for _ in range(3):  # the pinned buffer is reused between batches
        cpu, gpu = on_cpu.sample(16), on_gpu.sample(16, "cuda")
        assert gpu.obs.device.type == "cuda"
        for name in ("obs", "action", "reward", "next_obs", "terminated"):
            assert torch.equal(getattr(cpu, name), getattr(gpu, name).cpu()), name


@pytest.mark.parametrize("method", ["mean", "pcgrad"])
def test_the_update_runs_on_the_gpu(method):
    agent = MultiTaskSAC(
        4, 2, 3, AgentConfig(hidden_sizes=(32, 32), critic_grad=method, actor_grad=method), "cuda"
    )
    batch = _replay(seed=0).sample(16, "cuda")
    before = [p.detach().clone() for p in agent.critic.parameters()]
    for _ in range(3):
        metrics = agent.update(batch)
    assert all(p.is_cuda for p in agent.actor.parameters())
    assert all(
        not torch.equal(b, p) for b, p in zip(before, agent.critic.parameters(), strict=True)
    )
    assert torch.isfinite(metrics["losses/critic"]).item()
    actions = agent.act(batch.obs[:, 0].cpu().numpy())
    assert actions.shape == (3, 2) and np.all(np.abs(actions) <= 1)


def test_a_short_training_run_on_the_gpu_finishes_and_evaluates(tmp_path):
    run_dir = tmp_path / "run"
    config = build_config(
        CONFIGS / "synthetic.yaml",
        ["device=cuda", "total_steps=400", "warmup_steps=100", f"run_dir={run_dir}",
         "progress=false", "agent.critic_grad=pcgrad"],
    )  # fmt: skip
    trainer = Trainer(config, run_dir)
    try:
        results = trainer.train()
    finally:
        trainer.close()
    assert trainer.agent.device.type == "cuda"
    assert results and all(0.0 <= r.success_rate <= 1.0 for r in results.values())
