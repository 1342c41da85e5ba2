"""How often the global grad-norm clip acts in the MT10 reference run, and whether our twin-critic
loss (the sum of the two critics' losses, 2x McLean et al.'s 0.5 x sum) can change an update.

Adam is invariant to a constant scale of its gradients, so the factor 2 matters only through the
clip at 1.0: ours steps on g min(1, 1/|g|), theirs on (g/2) min(1, 2/|g|). Both are g/|g| where
|g| > 2 (the same update) and a constant multiple of g where |g| < 1 (the same update, up to
Adam's eps); they differ only while |g| moves through [1, 2] or across those bounds. This trains
the reference preset (``mt10/scaling/mtmhsac_w0256``, fp32, seed ``--seed``) and records, for
each window of ``--window`` updates, the quantiles of the actor's and critic's pre-clip gradient
norms and the fractions of updates with |g| > 1 and with |g| > 2.

Resumable: the run directory is an ordinary ``mtrl train`` run (resumed from its checkpoint), and
``--out/windows.jsonl`` gains a line per finished window. A resume drops the windows that end
after its checkpoint and records from the checkpoint on (its first window ends at the next multiple
of ``--window``): the updates between the last kept window and the checkpoint go unrecorded.

    nice python benchmarks/grad_clip_activity.py --steps 100000      # ~1.4 h on 2 cores
    python benchmarks/grad_clip_activity.py --report-only
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from learning_runs import ROOT

PRESET = ROOT / "mtrl" / "presets" / "mt10" / "scaling" / "mtmhsac_w0256.yaml"
QUANTILES = (0.1, 0.5, 0.9)


class NormRecorder:
    """Wraps ``GradientStep.optimizer_step``: the pre-clip global norm of each role's gradients."""

    def __init__(self, out: Path, window: int, first_update: int) -> None:
        self.out, self.window, self.update = out, window, first_update
        self.norms: dict[str, list[float]] = {}

    def record(self, role: str, params: list[torch.Tensor]) -> None:
        norms = [p.grad.detach().norm() for p in params if p.grad is not None]
        self.norms.setdefault(role, []).append(float(torch.stack(norms).norm()))
        if role == "critic":  # the critic steps first in each update
            self.update += 1
        if role == "actor" and self.update % self.window == 0:  # windows end on multiples
            self.flush()

    def flush(self) -> None:
        line = {"last_update": self.update}
        for role, values in self.norms.items():
            norms = np.asarray(values)
            line[role] = {
                "updates": len(norms),
                "quantiles": dict(
                    zip(map(str, QUANTILES), np.quantile(norms, QUANTILES), strict=True)
                ),
                "above_1": float((norms > 1).mean()),
                "above_2": float((norms > 2).mean()),
            }
        with (self.out / "windows.jsonl").open("a") as file:
            file.write(json.dumps(line) + "\n")
        self.norms = {}


def windows(out: Path) -> list[dict]:
    path = out / "windows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def report(out: Path, warmup: int) -> str:
    rows = [
        "| updates | steps per task | critic |g| p10 / p50 / p90 | critic > 1 | critic > 2 "
        "| actor |g| p50 | actor > 1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for line in windows(out):
        critic, actor = line["critic"], line["actor"]
        q = critic["quantiles"]
        first = line["last_update"] - critic["updates"]
        rows.append(
            f"| {first:,}-{line['last_update']:,} | {(first + warmup) // 1000}k-"
            f"{(line['last_update'] + warmup) // 1000}k "
            f"| {q['0.1']:.2f} / {q['0.5']:.2f} / {q['0.9']:.2f} | {critic['above_1']:.2f} "
            f"| {critic['above_2']:.2f} | {actor['quantiles']['0.5']:.2f} | {actor['above_1']:.2f} |"
        )
    table = "\n".join(rows) + "\n"
    (out / "table.md").write_text(table)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=4_000, help="updates per recorded window")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/grad_clip_activity")
    parser.add_argument("--runs", type=Path, default=None, help="run directory (default --out/run)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    # The preset's warm-up vector steps: updates start after them.
    warmup = int(yaml.safe_load(PRESET.read_text())["warmup_steps"])
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        train(args, warmup)
    print(report(args.out, warmup))


def train(args: argparse.Namespace, warmup: int) -> None:
    import mtrl
    from mtrl.gradients.step import GradientStep
    from mtrl.training.checkpoint import checkpoint_step, step_checkpoints

    run_dir = args.runs or args.out / "run"
    if (run_dir / "eval" / "final.json").is_file():
        return
    checkpoints = step_checkpoints(run_dir) if run_dir.exists() else []
    resumed_at = checkpoint_step(checkpoints[-1]) if checkpoints else 0
    first_update = max(resumed_at - warmup, 0)
    # Windows measured past the checkpoint are measured again after the resume.
    kept = [line for line in windows(args.out) if line["last_update"] <= first_update]
    (args.out / "windows.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept))
    recorder = NormRecorder(args.out, args.window, first_update)
    original = GradientStep.optimizer_step

    def optimizer_step(self, losses):
        recorder.record(self.role, list(self.params.values()))
        return original(self, losses)

    GradientStep.optimizer_step = optimizer_step
    options = {
        "total_steps": args.steps,
        "eval_every": args.steps,  # only the final evaluation: this measures updates
        "final_eval_episodes": 10,
        "checkpoint_every": 10_000,
        "checkpoint_replay": True,
        "keep_checkpoints": 1,
        "torch_threads": args.torch_threads,
        "progress": False,
    }
    if checkpoints:
        mtrl.train(resume=run_dir, **options)
    else:
        mtrl.train(
            str(PRESET), run_dir=run_dir, seed=args.seed, agent={"precision": "fp32"}, **options
        )


if __name__ == "__main__":
    main()
