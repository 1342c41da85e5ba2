"""bf16 learns what fp32 learns, for every network and every gradient method, on the synthetic
tasks (issue 19's learning matrix). Slow (~25 min on one core): `python -m pytest -m slow
tests/test_precision_learning.py`; the default suite keeps one bf16 learning test
(test_precision.py) and the fp32 matrix of test_train.py."""

from __future__ import annotations

import numpy as np
import pytest
from test_train import SPECS, _final_success

from mtrl.agents.networks import NETWORKS
from mtrl.gradients import GRADIENT_METHODS

pytestmark = pytest.mark.slow
BF16 = "agent.precision=bf16"


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_every_network_solves_the_tasks_in_bf16(tmp_path, network):
    """fp32's bar for every architecture (test_train.py): >= 90% mean success, seed 0."""
    spec = SPECS.get(network, network)
    finals = _final_success(tmp_path, 1, [f"agent.critic={spec}", f"agent.actor={spec}", BF16])
    print(f"{network}: bf16 {finals[0]:.2f}")  # the record of a run (-rP shows it)
    assert np.mean(finals) >= 0.9, finals


@pytest.mark.parametrize("method", sorted(GRADIENT_METHODS))
def test_every_gradient_method_learns_in_bf16_as_in_fp32(tmp_path, method):
    """The same run (seed 0, 2,500 steps, 10 final episodes per task) in both precisions: bf16
    within 0.25 of fp32's mean success (one task's worth of the 4), and >= 0.9 where fp32 is."""
    methods = [f"agent.critic_grad={method}", f"agent.actor_grad={method}"]
    (fp32,) = _final_success(tmp_path / "fp32", 1, methods)
    (bf16,) = _final_success(tmp_path / "bf16", 1, [*methods, BF16])
    print(f"{method}: fp32 {fp32:.2f}, bf16 {bf16:.2f}")
    assert bf16 >= fp32 - 0.25, (fp32, bf16)
    if fp32 >= 0.9:
        assert bf16 >= 0.9, (fp32, bf16)
