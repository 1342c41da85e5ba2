"""The refactors of the house keep training's numbers: short deterministic synthetic runs, one per
path through the gradient step, against the metrics recorded before the per-task gradient engine
moved out of the agent (``tests/data/update_equivalence.json``, recorded at commit 10a427e).

The paths: the single backward pass (mean; loss weightings), the per-task vmap pass with a Gram
method (PCGrad, MGDA, GradNorm on its last shared layer), task-specific parameters (multi-head
critic and actor), KPI-driven weights (DTP, through the trainer's success reports), and the
diagnostics' per-task pass on a mean step. On the machine that recorded them the values are equal
bit for bit; the comparison allows a relative 1e-4, the size of a different CPU's matmul rounding
carried through 100 updates, far below any change of what an update computes.

    python tests/test_update_equivalence.py --record   # only when a change of numbers is intended
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "update_equivalence.json"
TIMING = ("charts/env_steps_per_s", "charts/updates_per_s", "charts/time_")
COMMON = [
    "deterministic=true",
    "agent.compile=false",
    "total_steps=200",
    "warmup_steps=100",
    "log_every=20",
    "eval_every=0",
    "final_eval_episodes=2",
    "agent.hidden_sizes=[32,32]",
    "agent.batch_size_per_task=16",
    "agent.diagnostics_every=7",
    "torch_threads=1",
]
CASES = {
    "mean": ["agent.critic_grad=mean", "agent.actor_grad=mean"],
    "pcgrad_multihead": [
        "agent.critic=multihead",
        "agent.actor=multihead",
        "agent.critic_grad=pcgrad",
        "agent.actor_grad=pcgrad_dir",
    ],
    "gradnorm_dtp": ["agent.critic_grad=gradnorm", "agent.actor_grad=dtp"],
    "mgda_uncertainty": [
        "agent.critic=multihead",
        "agent.critic_grad=mgda",
        "agent.actor_grad=uncertainty",
    ],
    "dwa_imtl": ["agent.critic_grad=dwa:window=10", "agent.actor_grad=imtl_g"],
}


def run_case(run_dir: Path, overrides: list[str]) -> list[dict]:
    from mtrl.config import build_config
    from mtrl.training.logging import read_metrics
    from mtrl.training.trainer import Trainer

    config = build_config(
        ROOT / "mtrl" / "presets" / "synthetic.yaml",
        [*COMMON, *overrides, f"run_dir={run_dir}", "progress=false"],
    )
    trainer = Trainer(config, run_dir)
    try:
        trainer.train()
    finally:
        trainer.close()
    return [
        {k: v for k, v in record.items() if not k.startswith(TIMING)}
        for record in read_metrics(run_dir)
        if record["kind"] in ("train", "final_eval")
    ]


# Metrics added since the recording (the curvature diagnostics of diagnostic updates, each task's
# gradient norm and conflict share, each pair's cosine, the plasticity diagnostics): new keys,
# computed from what the update computed anyway or after the step without drawing random numbers,
# so they change nothing that was recorded.
ADDED = ("curvature", "curvature_bound_mean", "curvature_bound_max", "thm2_fraction_a")
ADDED += ("thm2_fraction_ab", "dormant_fraction", "effective_rank", "weight_norm", "feature_norm")
ADDED += tuple(
    f"{role}_{name}"
    for role in ("critic", "actor")
    for name in ("grad_norm", "conflict_share", "cosine")
)


def _close(ours, theirs, path: str) -> None:
    if isinstance(theirs, dict):
        added = {k for k in set(ours) - set(theirs) if k.rpartition("/")[2] in ADDED}
        assert sorted(set(ours) - added) == sorted(theirs), f"{path}: keys differ"
        for key in theirs:
            _close(ours[key], theirs[key], f"{path}/{key}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), f"{path}: lengths differ"
        for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _close(a, b, f"{path}[{k}]")
    elif isinstance(theirs, float):
        assert math.isclose(ours, theirs, rel_tol=1e-4, abs_tol=1e-6), f"{path}: {ours} != {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_numbers_are_those_recorded_before_the_refactor(tmp_path, case):
    golden = json.loads(GOLDEN.read_text())
    _close(run_case(tmp_path / case, CASES[case]), golden[case], case)


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        records = {case: run_case(Path(tmp) / case, CASES[case]) for case in sorted(CASES)}
    GOLDEN.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
