"""What the gradient diagnostics cost: a diagnostic update (the per-task pass, conflict and
curvature diagnostics for critic and actor, and the plasticity diagnostics) against a plain one, at
MT10 shapes, and the share of update time that is at the default interval
(``agent.diagnostics_every=1000``); then the plasticity diagnostics alone (``mtrl.agents.plasticity``:
hooked forward passes and three SVDs) against a plain ``mean`` update.

    python benchmarks/diagnostics_cost.py [--hidden 400 400 400] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from gradient_step import ACTION_DIM, SHAPES, random_batch

from mtrl.agents.plasticity import plasticity_metrics
from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import AgentConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", nargs="+", type=int, default=[400, 400, 400])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--interval", type=int, default=1000, help="agent.diagnostics_every")
    args = parser.parse_args()
    num_tasks, obs_dim = SHAPES["MT10"]
    batch = random_batch(num_tasks, obs_dim, 128, torch.Generator().manual_seed(0))
    plain_agents = {}
    for method in ("mean", "pcgrad"):
        agents = {}
        for every in (0, 1):  # never, and every update
            config = AgentConfig(
                hidden_sizes=tuple(args.hidden),
                critic_grad=method,
                actor_grad=method,
                diagnostics_every=every,
            )
            agents[every] = MultiTaskSAC(obs_dim, ACTION_DIM, num_tasks, config)
        plain_agents[method] = agents[0]
        for agent in agents.values():  # warm-up: compiling the passes
            for _ in range(2):
                agent.update(batch)
        times: dict[int, list[float]] = {0: [], 1: []}
        for _ in range(args.repeats):  # interleaved, so drifts in load hit both alike
            for every, agent in agents.items():
                start = time.perf_counter()
                agent.update(batch)
                times[every].append(time.perf_counter() - start)
        plain, diagnostic = (statistics.median(times[k]) for k in (0, 1))
        share = (diagnostic - plain) / (args.interval * plain)
        print(
            f"{method}: plain update {plain * 1e3:.0f} ms, diagnostic update "
            f"{diagnostic * 1e3:.0f} ms ({diagnostic / plain:.1f}x); at diagnostics_every="
            f"{args.interval}: {100 * share:.2f}% of update time"
        )
    plain_agent = plain_agents["mean"]
    times = {"update": [], "plasticity": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        plain_agent.update(batch)
        times["update"].append(time.perf_counter() - start)
        start = time.perf_counter()
        metrics = plasticity_metrics(plain_agent.actor, plain_agent.critic, batch.obs, 0.1)
        torch.stack(list(metrics.values())).tolist()  # the host sync logging does
        times["plasticity"].append(time.perf_counter() - start)
    plain, plasticity = (statistics.median(times[k]) for k in ("update", "plasticity"))
    print(
        f"plasticity diagnostics: {plasticity * 1e3:.0f} ms ({plasticity / plain:.2f}x a plain "
        f"update); at diagnostics_every={args.interval}: "
        f"{100 * plasticity / (args.interval * plain):.3f}% of update time"
    )


if __name__ == "__main__":
    main()
