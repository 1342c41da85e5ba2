"""The cost of the gradient step: every method's full SAC update against plain MT-SAC, at MT10 and
MT50 shapes, plus the two ways of getting per-task gradients and of doing PCGrad's surgery.

All rows of a shape are measured in one run, interleaved round by round (so drifts in machine load
hit every row alike), and reported as medians and as ratios to the ``mean`` update:

- "critic update, <method>": the critic's share of an update (TD targets, per-task losses, the
  method, the Adam step), with the defaults (the per-task pass compiled, ``agent.compile``); the
  same for pcgrad with the pass run eagerly; and PCGrad done the usual way, one backward pass per
  task through the shared graph (facebookresearch/mtrl's way, the reference);
- "full update": critic, actor, temperatures and targets, with the method on critic and actor;
- "per-task grads: vmap" vs "per-task grads: T passes": the critic's per-task gradients from one
  ``torch.func`` vmap pass, and from one forward and backward pass per task on its own rows;
- "PCGrad surgery: Gram" vs "PCGrad surgery: vectors": the combination alone, in coefficient
  space from the T x T Gram matrix, and as Alg. 1 written on P-sized vectors (T^2 dot products).

- architectures: the full update of every network of ``mtrl.agents.networks`` (``mean`` and
  ``pcgrad``), each at the width that matches the ``shared`` critic's parameter count, against
  ``shared``.
- critic losses: the full update with each ``agent.critic_loss`` (101 bins) on the ``shared``
  critic, and the whole 2025 recipe (BroNet critic at the matched width, categorical loss, task
  embeddings, reward normalisation), against the ``mse`` update.

    python benchmarks/gradient_step.py [--shapes MT10 MT50] [--repeats 7] [--hidden 400 400 400]
        [--architectures MT10] [--critic-losses MT10] [--methods mean pcgrad ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from mtrl import gradients
from mtrl.agents.networks import NETWORKS, matched_width, network_count
from mtrl.agents.sac import MultiTaskSAC
from mtrl.config import AgentConfig
from mtrl.gradients.pcgrad import random_orders
from mtrl.training.replay import Batch

# Every agent here compiles its own gradient passes (agent.compile), dozens in one process; torch's
# default of 8 compiled variants per function would silently leave the later agents eager.
torch._dynamo.config.recompile_limit = 1024
torch._dynamo.config.accumulated_recompile_limit = 8192

SHAPES = {"MT10": (10, 39 + 10), "MT50": (50, 39 + 50)}  # tasks, observation size
ACTION_DIM = 4
# Every registered method (mean first), and Nash-MTL solving once per 50 updates (their Nash-MTL-50).
METHODS = [*gradients.GRADIENT_METHODS, "nash_mtl:update_every=50"]


def random_batch(num_tasks: int, obs_dim: int, batch_size: int, generator) -> Batch:
    one_hot = torch.eye(num_tasks).unsqueeze(1).expand(num_tasks, batch_size, num_tasks)
    state_dim = obs_dim - num_tasks

    def observations():
        return torch.cat(
            [torch.randn(num_tasks, batch_size, state_dim, generator=generator), one_hot], -1
        )

    return Batch(
        obs=observations(),
        action=torch.rand(num_tasks, batch_size, ACTION_DIM, generator=generator) * 2 - 1,
        reward=torch.randn(num_tasks, batch_size, generator=generator),
        next_obs=observations(),
        terminated=torch.zeros(num_tasks, batch_size),
    )


def pcgrad_on_vectors(task_grads: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Alg. 1 as usually implemented: T^2 dot products and updates of P-sized vectors."""
    projected = task_grads.clone()
    for i in range(task_grads.shape[0]):
        for j in orders[i].tolist():
            dot = projected[i] @ task_grads[j]
            if dot < 0:
                projected[i] -= dot / (task_grads[j] @ task_grads[j]) * task_grads[j]
    return projected.mean(0)


def loop_gradients(agent: MultiTaskSAC, batch: Batch, target: torch.Tensor) -> list[torch.Tensor]:
    """Per-task gradients by one forward and backward pass per task's own rows: [T, ...] each."""
    params = list(agent.critic.parameters())
    rows = []
    for i in range(batch.reward.shape[0]):
        x = torch.cat([batch.action[i : i + 1], batch.obs[i : i + 1]], -1)  # [1, B, A + obs]
        q = agent.critic(x).view(2, -1)  # [2, B]
        loss = (q - target[i]).pow(2).sum(0).mean()
        rows.append(torch.autograd.grad(loss, params))
    return [torch.stack(per_param) for per_param in zip(*rows, strict=True)]


def vmap_gradients(agent: MultiTaskSAC, batch: Batch, target: torch.Tensor) -> list[torch.Tensor]:
    """Per-task gradients from one vmap pass over the task dimension: [T, ...] each."""
    grads, _ = agent.critic_step.per_task_gradients(
        agent.critic_losses, (batch.obs, batch.action, target)
    )
    return list(grads.values())


def measure(rows: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call; every round calls every row once, in order."""
    for call in rows.values():
        call()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, call in rows.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def critic_update(agent: MultiTaskSAC, batch: Batch) -> None:
    """The critic's share of an update: TD targets, per-task losses, the method, the Adam step."""
    agent.critic_step(agent.critic_losses, (batch.obs, batch.action, agent.td_target(batch)))


def critic_update_by_backward_loop(agent: MultiTaskSAC, batch: Batch) -> None:
    """PCGrad as facebookresearch/mtrl and most MTL code do it (the reference, benchmark only):
    one forward over the whole batch, one backward pass per task through the shared graph, the
    surgery on P-sized vectors, then the step."""
    num_tasks = batch.reward.shape[0]
    target = agent.td_target(batch)  # [T, B]
    q = agent.critic(torch.cat([batch.action, batch.obs], -1)).squeeze(-1)  # [2, T, B]
    task_losses = (q - target).pow(2).sum(0).mean(1)  # [T]
    params = list(agent.critic.parameters())
    rows = []
    for i in range(num_tasks):
        grads = torch.autograd.grad(task_losses[i], params, retain_graph=i < num_tasks - 1)
        rows.append(torch.cat([g.flatten() for g in grads]))
    orders = random_orders(num_tasks, torch.Generator().manual_seed(0))
    combined = pcgrad_on_vectors(torch.stack(rows), orders)
    offset = 0
    for param in params:
        param.grad = combined[offset : offset + param.numel()].view_as(param)
        offset += param.numel()
    agent.critic_optimizer.step()


def run_shape(
    shape: str,
    hidden: tuple[int, ...],
    batch_size: int,
    repeats: int,
    methods: list[str] = METHODS,
) -> None:
    num_tasks, obs_dim = SHAPES[shape]
    generator = torch.Generator().manual_seed(0)
    batch = random_batch(num_tasks, obs_dim, batch_size, generator)

    def agent_with(method: str, compile: bool = True) -> MultiTaskSAC:
        config = AgentConfig(
            hidden_sizes=hidden,
            batch_size_per_task=batch_size,
            critic_grad=method,
            actor_grad=method,
            diagnostics_every=0,
            compile=compile,
        )
        return MultiTaskSAC(obs_dim, ACTION_DIM, num_tasks, config, seed=0)

    rows: dict[str, Callable[[], object]] = {}
    for method in dict.fromkeys(["mean", *methods]):  # mean first: the ratios' unit
        agent = agent_with(method)
        rows[f"critic update, {method}"] = lambda agent=agent: critic_update(agent, batch)
    eager = agent_with("pcgrad", compile=False)
    rows["critic update, pcgrad, eager pass"] = lambda: critic_update(eager, batch)
    reference = agent_with("mean")
    rows["critic update, pcgrad by T backward passes"] = lambda: critic_update_by_backward_loop(
        reference, batch
    )
    for method in ("mean", "pcgrad"):
        agent = agent_with(method)
        rows[f"full update (critic + actor), {method}"] = lambda agent=agent: agent.update(batch)

    target = reference.td_target(batch)
    rows["per-task grads: vmap"] = lambda: vmap_gradients(reference, batch, target)
    rows["per-task grads: T passes"] = lambda: loop_gradients(reference, batch, target)
    task_grads = torch.cat([g.flatten(1) for g in vmap_gradients(reference, batch, target)], 1)
    method = gradients.make("pcgrad", num_tasks)
    orders = random_orders(num_tasks, torch.Generator().manual_seed(1))
    rows["PCGrad surgery: Gram"] = lambda: method.combine(task_grads, None)
    rows["PCGrad surgery: vectors"] = lambda: pcgrad_on_vectors(task_grads, orders)

    seconds = measure(rows, repeats)
    base = seconds["critic update, mean"]
    print(
        f"\n{shape}: T={num_tasks}, obs={obs_dim}, hidden={list(hidden)}, "
        f"{batch_size} per task ({num_tasks * batch_size} rows), P(critic)="
        f"{task_grads.shape[1]:,}, {torch.get_num_threads()} threads, median of {repeats}"
    )
    print(f"| {'row':<42} | {'ms':>8} | {'x mean critic update':>20} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 22}|")
    for name, value in seconds.items():
        print(f"| {name:<42} | {value * 1e3:>8.1f} | {value / base:>20.2f} |")
    loop = seconds["critic update, pcgrad by T backward passes"]
    print(
        f"critic update with pcgrad: {loop / seconds['critic update, pcgrad']:.1f}x faster "
        f"than with {num_tasks} backward passes; Gram-space surgery: "
        f"{seconds['PCGrad surgery: vectors'] / seconds['PCGrad surgery: Gram']:.1f}x faster "
        "than vector surgery"
    )


def run_architectures(shape: str, hidden: tuple[int, ...], batch_size: int, repeats: int) -> None:
    """Full update time of every architecture at a parameter count matched to ``shared``."""
    num_tasks, obs_dim = SHAPES[shape]
    batch = random_batch(num_tasks, obs_dim, batch_size, torch.Generator().manual_seed(0))
    reference = network_count("shared", obs_dim + ACTION_DIM, 1, num_tasks, hidden)
    rows: dict[str, Callable[[], object]] = {}
    counts = {}
    for name in NETWORKS:
        width = matched_width(name, reference, obs_dim + ACTION_DIM, 1, num_tasks, len(hidden))
        spec = f"{name}:width={width}"
        for method in ("mean", "pcgrad"):
            config = AgentConfig(
                hidden_sizes=hidden,
                actor=spec,
                critic=spec,
                critic_grad=method,
                actor_grad=method,
                diagnostics_every=0,
            )
            agent = MultiTaskSAC(obs_dim, ACTION_DIM, num_tasks, config, seed=0)
            counts[name] = (width, agent.parameter_counts()["critic"] // 2)
            rows[f"{name}, {method}"] = lambda agent=agent: agent.update(batch)
    seconds = measure(rows, repeats)
    print(
        f"\n{shape} architectures: full update (critic + actor), critic width matched to "
        f"shared {list(hidden)} ({reference:,} parameters per critic), median of {repeats}"
    )
    print(
        f"| {'architecture':<14} | width | params/critic | {'method':<6} | {'ms':>6} | x shared |"
    )
    print(f"|{'-' * 16}|-------|---------------|--------|--------|----------|")
    for key, value in seconds.items():
        name, method = key.split(", ")
        ratio = value / seconds[f"shared, {method}"]
        width, count = counts[name]
        print(
            f"| {name:<14} | {width:>5} | {count:>13,} | {method:<6} | {value * 1e3:>6.1f} |"
            f" {ratio:>8.2f} |"
        )


def run_critic_losses(shape: str, hidden: tuple[int, ...], batch_size: int, repeats: int) -> None:
    """Full update time of each critic loss, and of the whole recipe, against mse."""
    num_tasks, obs_dim = SHAPES[shape]
    batch = random_batch(num_tasks, obs_dim, batch_size, torch.Generator().manual_seed(0))
    reference = network_count("shared", obs_dim + ACTION_DIM, 1, num_tasks, hidden)
    width = matched_width("bronet", reference, obs_dim + ACTION_DIM, 1, num_tasks, len(hidden))
    variants = {
        "mse": {},
        "hl_gauss": {"critic_loss": "hl_gauss"},
        "categorical": {"critic_loss": "categorical"},
        f"recipe (bronet w={width})": {
            "critic": f"bronet:width={width}",
            "critic_loss": "categorical",
            "task_encoding": "embedding",
            "reward_norm": "returns",
        },
    }
    rows: dict[str, Callable[[], object]] = {}
    for name, options in variants.items():
        for method in ("mean", "pcgrad"):
            config = AgentConfig(
                hidden_sizes=hidden,
                critic_grad=method,
                actor_grad=method,
                diagnostics_every=0,
                **options,
            )
            agent = MultiTaskSAC(obs_dim, ACTION_DIM, num_tasks, config, seed=0)
            rows[f"{name}, {method}"] = lambda agent=agent: agent.update(batch)
    seconds = measure(rows, repeats)
    print(
        f"\n{shape} critic losses: full update (critic + actor), shared {list(hidden)}, "
        f"101 bins, median of {repeats}"
    )
    print(f"| {'critic':<24} | {'method':<6} | {'ms':>6} | x mse |")
    print(f"|{'-' * 26}|--------|--------|-------|")
    for key, value in seconds.items():
        name, method = key.rsplit(", ", 1)
        ratio = value / seconds[f"mse, {method}"]
        print(f"| {name:<24} | {method:<6} | {value * 1e3:>6.1f} | {ratio:>5.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=["MT10", "MT50"], choices=list(SHAPES))
    parser.add_argument("--hidden", nargs="+", type=int, default=[400, 400, 400])
    parser.add_argument("--batch", type=int, default=128, help="samples per task")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--methods", nargs="+", default=METHODS, help="method specs to time (default: all)"
    )
    parser.add_argument(
        "--architectures",
        nargs="*",
        default=["MT10"],
        choices=list(SHAPES),
        help="shapes at which to time every architecture (none: skip)",
    )
    parser.add_argument(
        "--critic-losses",
        nargs="*",
        default=["MT10"],
        choices=list(SHAPES),
        help="shapes at which to time the critic losses and the recipe (none: skip)",
    )
    args = parser.parse_args()
    for shape in args.shapes:
        run_shape(shape, tuple(args.hidden), args.batch, args.repeats, args.methods)
    for shape in args.architectures:
        run_architectures(shape, tuple(args.hidden), args.batch, args.repeats)
    for shape in args.critic_losses:
        run_critic_losses(shape, tuple(args.hidden), args.batch, args.repeats)


if __name__ == "__main__":
    main()
