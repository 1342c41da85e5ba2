"""``mtrl bench`` (and ``benchmarks/throughput.py``): where a training step's time goes, one run.

Prints, side by side: (a) this machine's fp32 matmul peak (one large sgemm); (b) the FLOP/s the
MT-SAC update achieves (FLOPs counted from the layer shapes) and its share of (a) or of the peak
measured beside it, whichever is higher; (c) raw Meta-World steps/s for the task set against steps/s inside our vector env, sync and sharded over
one process per core; (d) the training loop's time split (env stepping, policy inference, replay,
update, logging and the rest); (e) end-to-end env steps/s of training on MT1, MT10 (also sharded)
and MT50, and stable-baselines3's SAC on MT1 with the same network, batch and update ratio, as
shipped and with denormals flushed as our trainer does, in interleaved rounds; (f) two MT10 runs at
once; (g) the MT10 update of mtrl's default run beside one busy process. Every update timing and
training run is made in a fresh process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from mtrl.extras import available, install_hint
from mtrl.training.cores import usable_cores

HAVE_SB3 = available("stable_baselines3")  # the MT1 comparison's other library
ACTION_DIM = 4


def synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that a timer measures it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_second(
    step: Callable[[int], object], calls: int, warmup: int = 3, device: torch.device | None = None
) -> float:
    """Calls of ``step(k)`` per second, after a warm-up."""
    device = device or torch.device("cpu")
    for k in range(warmup):
        step(k)
    synchronize(device)
    start = time.perf_counter()
    for k in range(calls):
        step(k)
    synchronize(device)
    return calls / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------ compute
def sgemm_peak(
    size: int = 2048,
    calls: int = 10,
    rounds: int = 5,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> float:
    """FLOP/s of a [size, size] @ [size, size] fp32 matmul, the device's practical peak: the best
    of several rounds, since a shared host's slow moments would otherwise pass for a low peak."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    return (
        2 * size**3 * max(per_second(lambda k: a @ b, calls, device=device) for _ in range(rounds))
    )


def mlp_flops(rows: int, widths: tuple[int, ...]) -> int:
    """Forward FLOPs of an MLP (2 per multiply-add) on ``rows`` rows."""
    return sum(2 * rows * a * b for a, b in pairwise(widths))


def update_flops(obs_dim: int, num_tasks: int, hidden: tuple[int, ...], batch: int) -> int:
    """Matmul FLOPs of one MT-SAC update with the shared networks (backward = 2 x forward):
    TD target (actor, 2 target critics), critic step (2 critics forward and backward), actor step
    (actor forward and backward, 2 critics forward and their input-gradient pass)."""
    rows = num_tasks * batch
    actor = mlp_flops(rows, (obs_dim, *hidden, 2 * ACTION_DIM))
    critic = mlp_flops(rows, (obs_dim + ACTION_DIM, *hidden, 1))
    target = actor + 2 * critic
    critic_step = 2 * 3 * critic
    actor_step = 3 * actor + 2 * critic + 2 * critic
    return target + critic_step + actor_step


def update_seconds(
    num_tasks: int,
    obs_dim: int,
    hidden: tuple[int, ...],
    batch: int,
    device: torch.device | None = None,
    precision: str = "fp32",
    threads: int | None = None,
    min_seconds: float = 0.0,
) -> float:
    """Median seconds of one full MT-SAC update (mean gradient) on a random [T, B] batch. With
    ``threads`` (a run's torch_threads, 0 for mtrl's default) the process takes its threads as a
    training run does (``mtrl.training.run.share_cores``: registered, and at 0 adapting to the cores
    other processes leave it, looking before updates as the trainer's loop does); the updates go
    on for at least ``min_seconds``, so that a look falls among the timed ones."""
    device = device or torch.device("cpu")
    from mtrl.agents.sac import MultiTaskSAC
    from mtrl.config import AgentConfig, Config
    from mtrl.training.replay import Batch
    from mtrl.training.run import share_cores

    cores = None
    if threads is not None:
        if threads:
            torch.set_num_threads(threads)
        cores = share_cores(Config(torch_threads=threads))  # before the agent, as a run

    g = torch.Generator().manual_seed(0)
    one_hot = torch.eye(num_tasks).unsqueeze(1).expand(num_tasks, batch, num_tasks)

    def observations() -> torch.Tensor:
        state = torch.randn(num_tasks, batch, obs_dim - num_tasks, generator=g)
        return torch.cat([state, one_hot], -1)

    data = Batch(
        *(
            x.to(device)
            for x in (
                observations(),
                torch.rand(num_tasks, batch, ACTION_DIM, generator=g) * 2 - 1,
                torch.randn(num_tasks, batch, generator=g),
                observations(),
                torch.zeros(num_tasks, batch),
            )
        )
    )
    config = AgentConfig(
        hidden_sizes=hidden, batch_size_per_task=batch, diagnostics_every=0, precision=precision
    )
    agent = MultiTaskSAC(obs_dim, ACTION_DIM, num_tasks, config, device)
    times: list[float] = []
    if cores is not None:
        cores.enter()
    try:
        begin = time.perf_counter()
        while len(times) < 12 or time.perf_counter() - begin < min_seconds:
            if cores is not None:
                cores.check()
            start = time.perf_counter()
            agent.update(data)
            synchronize(device)
            times.append(time.perf_counter() - start)
    finally:
        if cores is not None:
            cores.leave()
    return float(np.median(times[2:]))


def update_seconds_and_peak(
    num_tasks: int,
    obs_dim: int,
    hidden: tuple[int, ...],
    batch: int,
    size: int,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> tuple[float, float]:
    """The update's median seconds and the matmul peak of its precision measured right after it
    in the same process, so that its share of the peak compares two numbers taken under the same
    host load."""
    seconds = update_seconds(num_tasks, obs_dim, hidden, batch, device, precision)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    return seconds, sgemm_peak(size, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------- envs
def ours_rate(spec: str, steps: int, vector: str = "sync") -> float:
    """Task steps/s of random actions through our vector env."""
    from mtrl.envs.metaworld import make_metaworld_env

    with make_metaworld_env(spec, seed=0, vector=vector) as env:
        env.reset()
        actions = np.random.default_rng(0).uniform(-1, 1, (steps, env.num_tasks, env.action_dim))
        return env.num_tasks * per_second(lambda k: env.step(actions[k]), steps)


def raw_rate(spec: str, steps: int) -> float:
    """Task steps/s of the env classes in a plain loop: no wrappers, reset at the time limit."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    from mtrl.envs.metaworld import load_goal_tasks

    envs = []
    for i, (name, goals) in enumerate(load_goal_tasks(spec, 0)):
        env = ALL_V3_ENVIRONMENTS[name]()
        env.set_task(goals[0])
        env.seed(i)
        env.reset()
        envs.append(env)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, len(envs), ACTION_DIM))

    def step(k: int) -> None:
        for env, action in zip(envs, actions[k], strict=True):
            *_, truncated, _ = env.step(action)
            if truncated:
                env.reset()

    rate = len(envs) * per_second(step, steps)
    for env in envs:
        env.close()
    return rate


# ---------------------------------------------------------------------------------- training
def lead_in(steps: int, warmup: int) -> int:
    """Untimed steps before a timed window: whole windows, at least the warm-up and 10 updates
    (by then the gradient passes are compiled)."""
    return -(-(warmup + 10) // steps) * steps


def training_window(
    spec: str,
    steps: int,
    hidden: tuple[int, ...],
    batch: int,
    warmup: int,
    device: str = "cpu",
    vector: str = "sync",
    precision: str = "fp32",
    threads: int = 0,
) -> dict[str, float]:
    """A short MT-SAC run (``threads``: its torch_threads, 0 for mtrl's default); the scalars of
    its last log window, ``steps`` long, which starts after the warm-up and the first updates (and
    the compiling of the gradient passes): env steps/s and the loop's time split."""
    from mtrl.training.logging import read_metrics
    from mtrl.training.run import build_run_config
    from mtrl.training.trainer import Trainer

    windows = 1 + lead_in(steps, warmup) // steps
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "run"
        config = build_run_config(
            None,
            [
                f"env.name={spec}",
                f"total_steps={windows * steps}",
                f"warmup_steps={warmup}",
                f"log_every={steps}",
                f"agent.hidden_sizes={list(hidden)}",
                f"agent.batch_size_per_task={batch}",
                f"replay_capacity_per_task={windows * steps}",
                "agent.diagnostics_every=0",
                "eval_every=0",
                "final_eval_episodes=1",
                "checkpoint_every=0",
                "progress=false",
                f"run_dir={run_dir}",
                f"device={device}",
                f"env.vector={vector}",
                f"agent.precision={precision}",
                f"torch_threads={threads}",
            ],
        )
        trainer = Trainer(config, run_dir)
        try:
            trainer.train()
        finally:
            trainer.close()
        return [r for r in read_metrics(run_dir) if r["kind"] == "train"][-1]


def sb3_rate(
    steps: int,
    hidden: tuple[int, ...],
    batch: int,
    warmup: int,
    device: str = "cpu",
    flush_denormal: bool = False,
) -> float:
    """stable-baselines3 SAC on MT1 reach-v3 (our env as a gymnasium env), one update per step:
    env steps/s over ``steps`` steps after the same untimed lead-in as ``training_window``'s. Meant for a fresh process
    (``in_fresh_process``): the float settings of the caller's process (our trainer
    flushes denormals) stay out of it unless ``flush_denormal`` asks for the same."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.vec_env import DummyVecEnv

    from mtrl.baselines.independent import SingleTaskEnv
    from mtrl.envs import make_env

    if flush_denormal:
        torch.set_flush_denormal(True)
    env = DummyVecEnv([lambda: SingleTaskEnv(make_env("MT1:reach-v3", 0), 0)])
    model = SAC(
        "MlpPolicy",
        env,
        buffer_size=lead_in(steps, warmup) + steps,
        learning_starts=warmup,
        batch_size=batch,
        policy_kwargs={"net_arch": list(hidden)},
        seed=0,
        device=device,
    )
    model.learn(lead_in(steps, warmup), progress_bar=False)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False, progress_bar=False)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def at_once(copies: int, function: Callable, *args: object, **variables: str) -> list:
    """``copies`` calls of ``function(*args)`` at the same time, each in a fresh process started
    with the environment ``variables`` on top of this one's (OpenMP reads them at start)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=copies, mp_context=spawn) as pool:
            futures = [pool.submit(function, *args) for _ in range(copies)]
            return [future.result() for future in futures]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def in_fresh_process(function: Callable, *args: object) -> object:
    """``function(*args)`` in a spawned process, so that no measurement inherits another's state:
    torch's float settings (our trainer flushes denormals), compiled-code caches, the heap
    (a training run timed after the updates in one process ran markedly slower)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        return pool.submit(function, *args).result()


# ---------------------------------------------------------------------------------------- main
# Per task set: the observation width (state plus one-hot) and the task count of its updates.
OBS_DIMS = {"MT1:reach-v3": 40, "MT10": 49, "MT50": 89}
TASKS = {"MT1:reach-v3": 1, "MT10": 10, "MT50": 50}
MT1 = "MT1:reach-v3"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mtrl bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps: a smoke run")
    parser.add_argument("--no-mt50", action="store_true", help="skip the MT50 rows (~2 GB)")
    parser.add_argument("--hidden", nargs="+", type=int, default=[400, 400, 400])
    parser.add_argument("--batch", type=int, default=128, help="samples per task")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the MT1 comparison with stable-baselines3 (median reported)",
    )
    parser.add_argument(
        "--no-sharing", action="store_true", help="skip (f), two training runs at once (minutes)"
    )
    parser.add_argument(
        "--no-busy",
        action="store_true",
        help="skip (g), the update beside one busy process (minutes)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from mtrl.training.run import resolve_device

    args = parse_args(argv)
    hidden, batch = tuple(args.hidden), args.batch
    device = resolve_device(args.device)
    # MT1's window is long: denormal floats build up over the first thousand updates, and
    # stable-baselines3 (which does not flush them) slows down with them.
    steps = {MT1: 1500, "MT10": 150, "MT50": 40}
    env_steps = {MT1: 2000, "MT10": 300, "MT50": 60}
    warmup = 200
    if args.quick:
        steps = {k: max(5, v // 50) for k, v in steps.items()}
        env_steps = {k: max(5, v // 20) for k, v in env_steps.items()}
        warmup = batch
    specs = [MT1, "MT10"] + ([] if args.no_mt50 else ["MT50"])

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"mtrl bench: {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {name}, networks {list(hidden)}, "
        f"{batch} samples per task"
    )
    size = 1024 if args.quick else 2048
    peaks = matmul_peaks(size, device)
    update_table(specs, hidden, batch, size, device, peaks)
    env_table(specs, env_steps)
    rate = training_table(specs, steps, hidden, batch, warmup, device.type, args.rounds)
    if not args.no_sharing:
        sharing(rate["MT10", "sync", "fp32"], steps["MT10"], hidden, batch, warmup, device.type)
    if not args.no_busy and device.type == "cpu":
        beside_busy_process(hidden, batch, 1 if args.quick else 3, 6.0 if args.quick else 8.0)
    return 0


def matmul_peaks(size: int, device: torch.device) -> dict[str, float]:
    """(a): the fp32 and bf16 matmul peaks, FLOP/s by precision."""
    peak = sgemm_peak(size, device=device)
    print(f"\n(a) fp32 matmul peak ({size}^3 sgemm): {peak / 1e9:,.1f} GFLOP/s")
    bf16_peak = sgemm_peak(size, device=device, dtype=torch.bfloat16)
    print(f"    bf16 matmul peak (same size): {bf16_peak / 1e9:,.1f} GFLOP/s")
    return {"fp32": peak, "bf16": bf16_peak}


def update_table(
    specs: list[str],
    hidden: tuple[int, ...],
    batch: int,
    size: int,
    device: torch.device,
    peaks: dict[str, float],
) -> None:
    """(b): the MT-SAC update's time and FLOP/s per task set and precision, against the peak."""
    print("\n(b) MT-SAC update (mean gradient, shared networks), fp32 and agent.precision=bf16")
    print(
        "| tasks | rows | precision | ms/update | x fp32 | GFLOP/update | GFLOP/s "
        "| matmul GFLOP/s beside it | x its peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        flops = update_flops(OBS_DIMS[spec], TASKS[spec], hidden, batch)
        fp32_seconds = None
        for precision in ("fp32", "bf16"):
            seconds, peak_beside = in_fresh_process(
                update_seconds_and_peak,
                TASKS[spec],
                OBS_DIMS[spec],
                hidden,
                batch,
                size,
                device,
                precision,
            )
            fp32_seconds = fp32_seconds or seconds
            # The share is of the higher of the two peaks: never flattered by a slow moment.
            share = flops / seconds / max(peaks[precision], peak_beside)
            print(
                f"| {spec} | {TASKS[spec] * batch} | {precision} | {seconds * 1e3:.1f} | "
                f"{fp32_seconds / seconds:.2f} | {flops / 1e9:.2f} | {flops / seconds / 1e9:.1f} "
                f"| {peak_beside / 1e9:.1f} | {share:.2f} |"
            )


def env_table(specs: list[str], env_steps: dict[str, int]) -> None:
    """(c): raw Meta-World steps/s against our vector env's, sync and sharded."""
    print("\n(c) env steps/s (task steps, random actions)")
    print("| task set | raw Meta-World loop | our sync vector env | ratio | sharded, 1 per core |")
    print("|---|---|---|---|---|")
    for spec in specs:
        raw = raw_rate(spec, env_steps[spec])
        ours = ours_rate(spec, env_steps[spec])
        sharded = ours_rate(spec, env_steps[spec], "sharded") if TASKS[spec] > 1 else None
        print(
            f"| {spec} | {raw:,.0f} | {ours:,.0f} | {ours / raw:.2f} | "
            + (f"{sharded:,.0f} |" if sharded else "(one task) |")
        )


def training_table(
    specs: list[str],
    steps: dict[str, int],
    hidden: tuple[int, ...],
    batch: int,
    warmup: int,
    device: str,
    rounds_of_mt1: int,
) -> dict[tuple[str, str, str], float]:
    """(d, e): end-to-end env steps/s and the loop's time split per run, stable-baselines3's MT1
    rows beside ours; returns env steps/s by (task set, env.vector, precision)."""
    print("\n(d, e) training: env steps/s end to end and where the time goes")
    print("| run | env steps/s | env | inference | replay | update | other |")
    print("|---|---|---|---|---|---|---|")
    rounds = mt1_rounds(steps[MT1], hidden, batch, warmup, device, rounds_of_mt1)
    windows = {(MT1, "sync"): rounds[len(rounds) // 2][0]}
    runs = [(spec, "sync", "fp32") for spec in specs]
    runs += [("MT10", "sharded", "fp32"), ("MT10", "sync", "bf16")]
    for spec, vector, precision in runs:
        if (spec, vector) not in windows or precision != "fp32":
            windows[spec, vector, precision] = in_fresh_process(
                training_window,
                spec,
                steps[spec],
                hidden,
                batch,
                warmup,
                device,
                vector,
                precision,
            )
        else:
            windows[spec, vector, precision] = windows[spec, vector]
        window = windows[spec, vector, precision]
        parts = [
            window[f"charts/time_{p}_fraction"]
            for p in ("env", "inference", "replay", "update", "other")
        ]
        name = f"mtrl {spec}" + (", env.vector=sharded" if vector == "sharded" else "")
        name += ", agent.precision=bf16" if precision == "bf16" else ""
        print(
            f"| {name} | {window['charts/env_steps_per_s']:,.0f} | "
            + " | ".join(f"{p:.0%}" for p in parts)
            + " |"
        )
    if HAVE_SB3:
        print_sb3_comparison(rounds, MT1)
    else:
        print(
            f"\n(no stable-baselines3 rows: it is not installed; {install_hint('stable_baselines3')})"
        )
    rate = {key: w["charts/env_steps_per_s"] for key, w in windows.items() if len(key) == 3}
    print(
        f"MT10 end to end: agent.precision=bf16 {rate['MT10', 'sync', 'bf16'] / rate['MT10', 'sync', 'fp32']:.2f}x"
        " fp32's env steps/s"
    )
    return rate


def mt1_rounds(
    steps: int, hidden: tuple[int, ...], batch: int, warmup: int, device: str, rounds: int
) -> list[tuple[dict[str, float], tuple[float, float, float]]]:
    """The MT1 comparison in interleaved rounds (ours, theirs as shipped, theirs flushing
    denormals), so that a shared host's load drifting over the minutes of a run falls on both
    libraries alike (one round each gives ratios minutes apart that disagree): per round, our log
    window and the three env steps/s, sorted by ours."""
    results = []
    for _ in range(rounds):
        window = in_fresh_process(
            training_window, MT1, steps, hidden, batch, warmup, device, "sync"
        )
        shipped, flushed = (
            in_fresh_process(sb3_rate, steps, hidden, batch, warmup, device, flush)
            if HAVE_SB3
            else float("nan")
            for flush in (False, True)
        )
        results.append((window, (window["charts/env_steps_per_s"], shipped, flushed)))
    results.sort(key=lambda r: r[1][0])
    return results


def print_sb3_comparison(rounds: list, mt1: str) -> None:
    """The stable-baselines3 rows of (d) and the ratio line, medians over the rounds."""
    for column, label in ((1, "as shipped"), (2, "flushing denormals, as mtrl does")):
        rate = float(np.median([r[1][column] for r in rounds]))
        print(f"| stable-baselines3 {mt1}, {label} | {rate:,.0f} | | | | | |")
    ratios = [
        [r[1][0] / r[1][column] for r in rounds] for column in (1, 2)
    ]  # ours / theirs, per round
    per_round = ", ".join(f"{a:.2f}x/{b:.2f}x" for a, b in zip(*ratios, strict=True))
    print(
        f"\nMT1 end to end, median of {len(rounds)} interleaved round(s): mtrl "
        f"{float(np.median(ratios[0])):.2f}x stable-baselines3's env steps/s as shipped, "
        f"{float(np.median(ratios[1])):.2f}x stable-baselines3 with denormals flushed too "
        f"(per round: {per_round}); mtrl and stable-baselines3 MT1 rows: medians over the rounds"
    )


PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


def sharing(
    alone: float, steps: int, hidden: tuple[int, ...], batch: int, warmup: int, device: str
) -> None:
    """(f): two MT10 training runs at once, started as a user starts them: with mtrl's default
    (each takes its share of the cores, ``mtrl/training/cores.py``), and with two threads each fixed,
    OpenMP spinning (its default) or sleeping (PASSIVE). One run alone on one thread is the most
    each of two runs can get from the cores."""
    print("\n(f) two MT10 training runs at once against one alone (row d)")
    print("| runs | env steps/s, each | time, each / one alone |")
    print("|---|---|---|")
    args = ("MT10", steps, hidden, batch, warmup, device, "sync", "fp32")
    one_thread = in_fresh_process(training_window, *args, 1)["charts/env_steps_per_s"]
    print(
        f"| one alone, torch_threads=1 (the bound for each of two) | {one_thread:,.0f} | "
        f"{alone / one_thread:.2f}x |"
    )
    cores = usable_cores()
    cases = (
        ("two, mtrl's default (torch_threads=0: a share of the cores each)", 0, {}),
        (f"two, torch_threads={cores} each, OpenMP spinning", cores, {}),
        (f"two, torch_threads={cores} each, OMP_WAIT_POLICY=PASSIVE", cores, PASSIVE),
    )
    for label, threads, variables in cases:
        windows = at_once(2, training_window, *args, threads, **variables)
        rates = [w["charts/env_steps_per_s"] for w in windows]
        print(
            f"| {label} | {', '.join(f'{r:,.0f}' for r in rates)} | "
            f"{', '.join(f'{alone / r:.2f}x' for r in rates)} |"
        )


SPIN = "while True: pass"
# One core kept busy, as a user's other job; or as a long run started with `nice` in another
# session (another terminal, tmux, `setsid nohup`), whose scheduling group (Linux's autogroup)
# then weighs as much as the run's, so that its niceness does not put it behind the run.
BUSY = {
    "beside one busy process": [sys.executable, "-c", SPIN],
    "beside one niced busy process": [sys.executable, "-c", f"import os; os.nice(19)\n{SPIN}"],
}


def beside_busy_process(
    hidden: tuple[int, ...], batch: int, rounds: int = 3, seconds: float = 8.0
) -> dict[tuple[str, str, int], float]:
    """(g): the MT10 update of mtrl's default run (``torch_threads=0``, adapting to the cores
    others leave it) beside one busy process, plain or niced, against the bound beside it, one
    thread (a thread per core would spin-wait on the busy process's core, niced or not); then
    without it, against a thread per core fixed (what the default takes on an idle machine; on a
    busy one it takes fewer). bf16 only where it is native (elsewhere nobody would train in it).
    Each timing in a fresh process, over ``seconds`` (more than one look at the cores), the cases
    interleaved over ``rounds``; medians in ms."""
    from mtrl.agents.precision import bf16_is_fast

    print("\n(g) the MT10 update beside one busy process (python -c 'while True: pass')")
    print("| where | precision | mtrl's default, ms | the bound, ms | default / bound |")
    print("|---|---|---|---|---|")
    cases = {where: (0, 1) for where in BUSY} | {"without it": (0, usable_cores())}
    precisions = ("fp32", "bf16") if bf16_is_fast(torch.device("cpu")) else ("fp32",)
    times: dict[tuple[str, str, int], list[float]] = {}
    for where, threads in cases.items():
        busy = subprocess.Popen(BUSY[where], start_new_session=True) if where in BUSY else None
        try:
            for _ in range(rounds):
                for precision in precisions:
                    for n in threads:
                        seconds_per_update = in_fresh_process(
                            update_seconds, 10, 49, hidden, batch, None, precision, n, seconds
                        )
                        times.setdefault((where, precision, n), []).append(seconds_per_update)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    medians = {key: float(np.median(value)) * 1e3 for key, value in times.items()}
    for where, (default, bound) in cases.items():
        for precision in precisions:
            ours, theirs = medians[where, precision, default], medians[where, precision, bound]
            label = f"torch_threads={bound}"
            print(
                f"| {where} | {precision} | {ours:.1f} | {theirs:.1f} ({label}) | "
                f"{ours / theirs:.2f}x |"
            )
    return medians


if __name__ == "__main__":
    raise SystemExit(main())
