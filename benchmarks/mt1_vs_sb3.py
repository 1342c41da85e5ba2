"""MT1 reach-v3: mtrl's SAC against stable-baselines3's SAC, same hyper-parameters, envs and seeds.

Both agents train on the same Meta-World env (our task wrapper: 500-step episodes, reward v2, the
one-hot appended, goals fixed by the seed) and are evaluated by the same function on the same
evaluation env (deterministic actions, success at any step, terminate on success), every
``--eval-every`` steps. One run interleaves the two libraries seed by seed, so both wall-clock
columns come from the same machine under the same load. Writes a Markdown table, a JSON of the
learning curves and a PNG of them under ``--out``.

    python benchmarks/mt1_vs_sb3.py                 # 3 seeds x 50k steps (~40 min on 2 cores)
    python benchmarks/mt1_vs_sb3.py --steps 5000 --seeds 1 --eval-episodes 2   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

TASK = "reach-v3"
SPEC = f"MT1:{TASK}"

# One set of hyper-parameters for both libraries (stable-baselines3's SAC defaults where MT-SAC and
# SB3 differ only in network size and batch, so that both libraries run as their users know them).
HIDDEN = [256, 256]
BATCH = 256
LR = 3e-4
TAU = 5e-3
GAMMA = 0.99
WARMUP = 1500
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # SB3's clamp


def mtrl_run(
    seed: int, steps: int, eval_every: int, eval_episodes: int, final_episodes: int, run_dir: Path
) -> dict:
    from mtrl.config import build_config
    from mtrl.training.logging import read_metrics
    from mtrl.training.trainer import Trainer

    config = build_config(
        None,
        [
            f"env.name={SPEC}",
            f"seed={seed}",
            f"total_steps={steps}",
            f"warmup_steps={WARMUP}",
            f"agent.hidden_sizes={HIDDEN}",
            f"agent.batch_size_per_task={BATCH}",
            f"agent.actor_lr={LR}",
            f"agent.critic_lr={LR}",
            f"agent.alpha_lr={LR}",
            f"agent.tau={TAU}",
            f"agent.gamma={GAMMA}",
            f"agent.log_std_min={LOG_STD_MIN}",
            f"agent.log_std_max={LOG_STD_MAX}",
            "agent.log_std_bound=clip",  # as SB3 (added 2026-12-02, after the table below)
            f"replay_capacity_per_task={steps}",
            f"eval_every={eval_every}",
            f"eval_episodes={eval_episodes}",
            f"final_eval_episodes={final_episodes}",
            f"checkpoint_every={steps}",
            "log_every=1000",
            "progress=false",
            "device=cpu",
            f"run_dir={run_dir}",
        ],
    )
    start = time.perf_counter()
    trainer = Trainer(config, run_dir)
    try:
        results = trainer.train()
    finally:
        trainer.close()
    seconds = time.perf_counter() - start
    curve = [
        (r["step"], r["eval/mean_success_rate"])
        for r in read_metrics(run_dir)
        if r["kind"] == "eval"
    ]
    return {"curve": curve, "final": results[TASK].success_rate, "seconds": seconds}


def sb3_run(
    seed: int, steps: int, eval_every: int, eval_episodes: int, final_episodes: int
) -> dict:
    from metaworld import env_dict
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    from mtrl.envs import make_env
    from mtrl.envs.metaworld import load_goal_tasks, make_task_env
    from mtrl.evaluation.protocol import EVAL_SEED_OFFSET, evaluate

    ((name, goals),) = load_goal_tasks(SPEC, seed)
    env = DummyVecEnv(
        [
            lambda: make_task_env(
                env_dict.ALL_V3_ENVIRONMENTS[name], goals, task_index=0, num_tasks=1, seed=seed
            )
        ]
    )
    model = SAC(
        "MlpPolicy",
        env,
        learning_rate=LR,
        buffer_size=steps,
        learning_starts=WARMUP,
        batch_size=BATCH,
        tau=TAU,
        gamma=GAMMA,
        train_freq=1,
        gradient_steps=1,
        ent_coef="auto_1.0",
        target_entropy=-4.0,
        policy_kwargs={"net_arch": HIDDEN},
        seed=seed,
        device="cpu",
        verbose=0,
    )

    def run_eval(episodes: int) -> float:
        with make_env(SPEC, seed + EVAL_SEED_OFFSET, goal_seed=seed) as eval_env:
            results = evaluate(
                lambda obs: model.predict(obs, deterministic=True)[0], eval_env, episodes
            )
        return results[TASK].success_rate

    curve: list[tuple[int, float]] = []

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                curve.append((self.num_timesteps, run_eval(eval_episodes)))
            return True

    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Evaluate())
    final = run_eval(final_episodes)
    seconds = time.perf_counter() - start
    env.close()
    return {"curve": curve, "final": final, "seconds": seconds}


def summarise(runs: dict[str, list[dict]], steps: int) -> str:
    lines = [
        f"MT1 {TASK}, {steps} env steps, {len(next(iter(runs.values())))} seeds, "
        f"{torch.get_num_threads()} torch threads, hidden {HIDDEN}, batch {BATCH}",
        "",
        "| library | final success (mean over seeds) | per seed | first step with success >= 0.8"
        " (per seed) | wall-clock s (mean) | env steps/s (incl. updates and evals) |",
        "|---|---|---|---|---|---|",
    ]
    for library, seeds in runs.items():
        finals = [s["final"] for s in seeds]
        firsts = []
        for s in seeds:
            hit = [step for step, success in s["curve"] if success >= 0.8]
            firsts.append(str(hit[0]) if hit else "-")
        seconds = np.mean([s["seconds"] for s in seeds])
        lines.append(
            f"| {library} | {np.mean(finals):.2f} | {', '.join(f'{f:.2f}' for f in finals)} | "
            f"{', '.join(firsts)} | {seconds:.0f} | {steps / seconds:.0f} |"
        )
    ratio = np.mean([s["seconds"] for s in runs["stable-baselines3"]]) / np.mean(
        [s["seconds"] for s in runs["mtrl"]]
    )
    lines += ["", f"stable-baselines3 wall-clock / mtrl wall-clock: {ratio:.2f}x"]
    return "\n".join(lines)


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for library, seeds in runs.items():
        steps = [step for step, _ in seeds[0]["curve"]]
        curves = np.array([[success for _, success in s["curve"]] for s in seeds])
        mean = curves.mean(0)
        axes.plot(steps, mean, label=library)
        axes.fill_between(steps, curves.min(0), curves.max(0), alpha=0.2)
    axes.set_xlabel("env steps")
    axes.set_ylabel("evaluation success rate")
    axes.set_title(f"MT1 {TASK}: mean and min-max over seeds")
    axes.set_ylim(-0.02, 1.02)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--final-episodes", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mt1_vs_sb3"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    runs: dict[str, list[dict]] = {"mtrl": [], "stable-baselines3": []}
    for seed in range(args.seeds):
        run_dir = args.out / f"mtrl-seed{seed}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        runs["mtrl"].append(
            mtrl_run(
                seed, args.steps, args.eval_every, args.eval_episodes, args.final_episodes, run_dir
            )
        )
        print(
            f"seed {seed} mtrl: {runs['mtrl'][-1]['final']:.2f} "
            f"in {runs['mtrl'][-1]['seconds']:.0f} s",
            flush=True,
        )
        runs["stable-baselines3"].append(
            sb3_run(seed, args.steps, args.eval_every, args.eval_episodes, args.final_episodes)
        )
        print(
            f"seed {seed} sb3:  {runs['stable-baselines3'][-1]['final']:.2f} "
            f"in {runs['stable-baselines3'][-1]['seconds']:.0f} s",
            flush=True,
        )

    table = summarise(runs, args.steps)
    print(table)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "curves.json").write_text(json.dumps(runs, indent=1))
    plot(runs, args.out / "curves.png")
    print(f"wrote {args.out}/table.md, curves.json, curves.png")


if __name__ == "__main__":
    main()
