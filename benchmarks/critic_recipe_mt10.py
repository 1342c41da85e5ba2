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
  returns ([-1000, 1000]: Meta-World v2 rewards are <= 10 a step, gamma = 0.99);
- ``recipe_pcgrad``: the recipe with PCGrad on the critic's gradients (the actor's stay the mean):
  does gradient surgery still help a critic whose tasks share one value scale?

Single-component arms, each MT-MH-SAC W = 256 with one of the recipe's changes:

- ``temperature``: only BRC's temperature settings (initial 0.1, target entropy -|A|/2), which
  the recipe arms need for their value scale but which could by themselves explain a gain;
- ``bronet``: only the critic body, a BroNet of 2 blocks at the width matching MT-MH-SAC's
  critic (MSE loss, one-hot, SAC's temperatures).

The ``mtmhsac`` arm is, unless asked for (``--arms mtmhsac``), the MT10 reference benchmark's
runs (``reference_mt10.py``: the same preset, seeds and evaluations, gone on to 100k steps per
task; nothing before 50k reads the run's length), so its seeds are not trained twice.

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
from learning_runs import ROOT, add_arguments, load_record, record_curve, train

PRESET = ROOT / "mtrl" / "presets" / "mt10" / "scaling" / "mtmhsac_w0256.yaml"
REFERENCE = ROOT / "benchmarks" / "results" / "reference_mt10" / "tanh" / "records"
TASKS, OBS, ACTIONS, EMBEDDING = 10, 39 + 10, 4, 32


def recipe_width(inputs: int = OBS + ACTIONS + EMBEDDING, outputs: int = 101) -> int:
    """The BroNet critic width whose member (by default 101 outputs and an embedding input, the
    recipe's) matches MT-MH-SAC's parameter count."""
    from mtrl.agents.networks import matched_width, network_count

    reference = network_count("multihead", OBS + ACTIONS, 1, TASKS, (256,) * 3)
    return matched_width("bronet", reference, inputs, outputs, TASKS, 3)


def arms() -> dict[str, list[str]]:
    temperature = ["agent.init_temperature=0.1", f"agent.target_entropy={-ACTIONS / 2}"]
    recipe = [
        f"agent.critic=bronet:blocks=2,width={recipe_width()}",
        "agent.critic_loss=categorical",
        "agent.bins=101",
        "agent.task_encoding=embedding",
        f"agent.task_embedding_dim={EMBEDDING}",
        *temperature,
    ]
    # Every arm keeps the tanh-bounded log std its MT-MH-SAC arm (the reference's runs) and its
    # first recipe run were made with, before the preset took McLean et al.'s clip (2026-12-02).
    tanh = "agent.log_std_bound=tanh"
    normalised = ["agent.reward_norm=returns", "agent.v_min=-10", "agent.v_max=10"]
    return {
        "mtmhsac": ["label=MT-MH-SAC W=256", tanh],
        "recipe": [*recipe, tanh, *normalised, "label=recipe"],
        "recipe_pcgrad": [
            *recipe,
            tanh,
            *normalised,
            "agent.critic_grad=pcgrad",
            "label=recipe + PCGrad",
        ],
        "recipe_no_norm": [
            *recipe,
            tanh,
            "agent.v_min=-1000",
            "agent.v_max=1000",
            "label=recipe without reward normalisation",
        ],
        "temperature": [*temperature, tanh, "label=MT-MH-SAC with BRC's temperatures"],
        "bronet": [
            f"agent.critic=bronet:blocks=2,width={recipe_width(OBS + ACTIONS, 1)}",
            tanh,
            "label=MT-MH-SAC with a BroNet critic",
        ],
    }


def arm_curves(out: Path, arm: str) -> tuple[dict[int, dict], str]:
    """seed -> curve for one arm, and where the curves come from. MT-MH-SAC's are the reference
    benchmark's runs (the same preset, seeds and evaluations; those runs went on to 100k, which
    changes nothing before 50k: no schedule reads total_steps) unless this benchmark ran its own."""
    names = {path.name for path in (out / "runs" / arm).glob("seed*")}
    names |= {path.stem for path in (out / "records" / arm).glob("seed*.json")}
    curves = {}
    for name in names:
        record = out / "records" / arm / f"{name}.json"
        curve = record_curve(out / "runs" / arm / name, record, TASKS)
        if curve is not None and curve["means"]:
            curves[int(name.removeprefix("seed"))] = curve
    if curves or arm != "mtmhsac":
        return curves, "this benchmark"
    borrowed = {
        int(p.stem.removeprefix("seed")): load_record(p) for p in REFERENCE.glob("seed*.json")
    }
    return borrowed, "the MT10 reference benchmark's runs (reference_mt10.py)"


def report(out: Path, reps: int, steps: int) -> str:
    from mtrl.analysis.stats import aggregate_estimates

    rows, results = [], {}
    for arm in arms():
        curves, source = arm_curves(out, arm)
        if not curves:
            continue
        step = min(steps, *(max(c["means"]) for c in curves.values()))  # reached by every seed
        seeds = sorted(s for s in curves if step in curves[s]["means"])
        per_seed = [float(curves[s]["means"][step]) for s in seeds]
        scored = [s for s in seeds if step in curves[s]["points"]]  # per-task scores kept
        interval = "n/a (no per-task scores)"
        iqm = low = high = None
        if scored:
            tasks = sorted(curves[scored[0]]["points"][step])
            scores = np.array([[curves[s]["points"][step][t] for t in tasks] for s in scored])
            iqm, low, high = aggregate_estimates(scores, reps=reps, seed=0)["iqm"].as_tuple()
            ci = f"[{low:.2f}, {high:.2f}]" if len(scored) > 1 else "(1 seed)"
            interval = f"{iqm:.2f} {ci}, seeds {', '.join(map(str, scored))}"
        own = source == "this benchmark"
        hours = [curves[s]["seconds"] / 3600 for s in seeds] if own else None
        counts = next(c["parameter_counts"] for c in curves.values() if "parameter_counts" in c)
        results[arm] = {
            "step": step,
            "seeds": seeds,
            "source": source,
            "mean": float(np.mean(per_seed)),
            "per_seed": per_seed,
            "iqm": iqm,
            "iqm_ci": [low, high],
            "iqm_seeds": scored,
            "hours": hours,
            "finished": [curves[s]["finished"] for s in seeds],
            "parameter_counts": counts,
        }
        time = ", ".join(f"{h:.2f}" for h in hours) if hours else "see the reference"
        rows.append(
            f"| {arm} | {counts['critic_member']:,} | {step // 1000}k | {len(seeds)} | "
            f"{np.mean(per_seed):.2f} | {', '.join(f'{v:.2f}' for v in per_seed)} | {interval} | "
            f"{time} |"
        )
    borrowed = [arm for arm, r in results.items() if r["source"] != "this benchmark"]
    note = (
        f" Arm{'s' if len(borrowed) > 1 else ''} {', '.join(borrowed)}: the curves of the MT10 "
        "reference benchmark (the same preset, seeds and evaluations; its runs went on to 100k "
        "steps per task, which changes nothing before 50k)."
        if borrowed
        else ""
    )
    text = "\n".join(
        [
            "| arm | params per critic | steps per task | seeds | mean success | per seed | "
            "IQM [95% CI] | hours per run |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Mean: over the seeds' mean success over the 10 tasks (50 evaluation episodes per "
            "task, one per training goal). IQM: over the seed x task matrix of the seeds whose "
            "per-task scores are recorded. Hours: wall-clock of each run on the 2-core CPU with "
            "torch_threads=1, evaluations included." + note,
        ]
    )
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(parser, "benchmarks/results/critic_recipe_mt10", [0, 1], 50_000, 25_000)
    trained = [arm for arm in arms() if arm != "mtmhsac"]  # mtmhsac: the reference's runs
    parser.add_argument("--arms", nargs="+", default=trained, choices=list(arms()))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        overrides = arms()
        for seed in args.seeds:
            for arm in args.arms:
                run_dir = args.out / "runs" / arm / f"seed{seed}"
                record = args.out / "records" / arm / f"seed{seed}.json"
                train(run_dir, PRESET, seed, args, overrides[arm], record)
                report(
                    args.out, args.bootstrap_reps, args.steps
                )  # the record lands as each run finishes
    print(report(args.out, args.bootstrap_reps, args.steps))


if __name__ == "__main__":
    main()
