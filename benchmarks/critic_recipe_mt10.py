"""Does the 2025 critic recipe help at MT10's small scale? MT-MH-SAC W = 256 against the recipe at
the same critic parameter count, with and without reward normalisation, 50k steps per task.

Arms (each ``mt10/scaling/mtmhsac_w0256``, McLean et al.'s protocol, plus overrides):

- ``mtmhsac``: MT-MH-SAC W = 256 as published (148k parameters per critic);
- ``recipe``: a BroNet critic (2 blocks) at the width whose parameter count matches, 101-bin
  categorical loss on [-10, 10], learned task embeddings, BRC's per-task reward normalisation, and
  the temperature settings BRC's value scale assumes (initial temperature 0.1, target entropy
  -|A|/2: with v_max = 10 a normalised step's reward is ~0.1, which an entropy bonus at alpha = 1
  would drown; measured on the synthetic tasks, tests/test_train.py);
- ``recipe_no_norm``: the same without reward normalisation, on a support wide enough for the raw
  returns ([-1000, 1000]: Meta-World v2 rewards are <= 10 a step, gamma = 0.99).

Each (arm, seed) is a resumable run directory under ``--out/runs/<arm>/seed<k>``
(``learning_runs``), its curve kept in ``--out/records/<arm>/seed<k>.json`` (committed: run
directories stay on the machine that ran them); seeds run arm by arm, seed 0 of every arm first, so
a partial benchmark still compares every arm. ``--report-only`` writes the table from what exists.

    nice python benchmarks/critic_recipe_mt10.py --seeds 0 1     # ~1-2 h per run on 2 cores
    python benchmarks/critic_recipe_mt10.py --report-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from learning_runs import ROOT, add_arguments, record_curve, train

PRESET = ROOT / "mtrl" / "presets" / "mt10" / "scaling" / "mtmhsac_w0256.yaml"
TASKS, OBS, ACTIONS, EMBEDDING = 10, 39 + 10, 4, 32


def recipe_width() -> int:
    """The BroNet critic width whose member (101 outputs, embedding input) matches MT-MH-SAC's."""
    from mtrl.agents.networks import matched_width, network_count

    reference = network_count("multihead", OBS + ACTIONS, 1, TASKS, (256,) * 3)
    return matched_width("bronet", reference, OBS + ACTIONS + EMBEDDING, 101, TASKS, 3)


def arms() -> dict[str, list[str]]:
    recipe = [
        f"agent.critic=bronet:blocks=2,width={recipe_width()}",
        "agent.critic_loss=categorical",
        "agent.bins=101",
        "agent.task_encoding=embedding",
        f"agent.task_embedding_dim={EMBEDDING}",
        "agent.init_temperature=0.1",
        f"agent.target_entropy={-ACTIONS / 2}",
    ]
    return {
        "mtmhsac": ["label=MT-MH-SAC W=256"],
        "recipe": [
            *recipe,
            "agent.reward_norm=returns",
            "agent.v_min=-10",
            "agent.v_max=10",
            "label=recipe",
        ],
        "recipe_no_norm": [
            *recipe,
            "agent.v_min=-1000",
            "agent.v_max=1000",
            "label=recipe without reward normalisation",
        ],
    }


def report(out: Path, reps: int) -> str:
    from mtrl.stats import aggregate_estimates

    rows, results = [], {}
    for arm in arms():
        names = {path.name for path in (out / "runs" / arm).glob("seed*")}
        names |= {path.stem for path in (out / "records" / arm).glob("seed*.json")}
        curves = {}
        for name in names:
            record = out / "records" / arm / f"{name}.json"
            curve = record_curve(out / "runs" / arm / name, record, TASKS)
            if curve is not None and curve["points"]:
                curves[int(name.removeprefix("seed"))] = curve
        if not curves:
            continue
        step = min(max(c["points"]) for c in curves.values())  # reached by every seed
        seeds = sorted(curves)
        tasks = sorted(curves[seeds[0]]["points"][step])
        scores = np.array([[curves[s]["points"][step][t] for t in tasks] for s in seeds])
        iqm, low, high = aggregate_estimates(scores, reps=reps, seed=0)["iqm"].as_tuple()
        hours = [curves[s]["seconds"] / 3600 for s in seeds]
        counts = curves[seeds[0]]["parameter_counts"]
        results[arm] = {
            "step": step,
            "seeds": seeds,
            "mean": float(scores.mean()),
            "per_seed": [float(row.mean()) for row in scores],
            "iqm": iqm,
            "iqm_ci": [low, high],
            "hours": hours,
            "finished": [curves[s]["finished"] for s in seeds],
            "parameter_counts": counts,
        }
        interval = f"[{low:.2f}, {high:.2f}]" if len(seeds) > 1 else "(1 seed)"
        per_seed = ", ".join(f"{v:.2f}" for v in results[arm]["per_seed"])
        rows.append(
            f"| {arm} | {counts['critic_member']:,} | {step // 1000}k | {len(seeds)} | "
            f"{scores.mean():.2f} | {per_seed} | {iqm:.2f} {interval} | "
            f"{', '.join(f'{h:.2f}' for h in hours)} |"
        )
    text = "\n".join(
        [
            "| arm | params per critic | steps per task | seeds | mean success | per seed | "
            "IQM [95% CI] | hours per run |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Mean and IQM over the seed x task matrix of success rates (50 evaluation episodes "
            "per task, one per training goal); hours: wall-clock of each run on the 2-core CPU "
            "with torch_threads=1, evaluations included.",
        ]
    )
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/critic_recipe_mt10", [0, 1], 50_000, 25_000)
    parser.add_argument("--arms", nargs="+", default=list(arms()), choices=list(arms()))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        overrides = arms()
        for seed in args.seeds:
            for arm in args.arms:
                run_dir = args.out / "runs" / arm / f"seed{seed}"
                train(run_dir, PRESET, seed, args, overrides[arm])
                report(args.out, args.bootstrap_reps)  # the record lands as each run finishes
    print(report(args.out, args.bootstrap_reps))


if __name__ == "__main__":
    main()
