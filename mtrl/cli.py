"""``mtrl train | eval | export | sweep | tune | report | bench | presets | config show``: parse,
validate, call. Bad input is one line on stderr and exit code 2.

So is a run directory that another process is writing (``mtrl.training.lock``); a run stopped by a write
the disk refused is one line too, with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _train(args: argparse.Namespace) -> int:
    from mtrl.api import train
    from mtrl.evaluation.protocol import format_table
    from mtrl.training.checkpoint import checkpoint_dir

    if args.resume and args.config:
        print(
            "mtrl: --config is ignored with --resume (the run's config.yaml is used)",
            file=sys.stderr,
        )
    config = None if args.resume else args.config
    result = train(config, overrides=args.overrides, resume=args.resume, track=args.track)
    run_dir = result.run_dir
    if result.results is None:  # stopped by SIGINT/SIGTERM/SIGHUP after writing a checkpoint
        print(f"stopped at step {result.step}; resume with: mtrl train --resume {run_dir}")
        return 0
    print(format_table(result.results))
    print(f"\nrun directory: {run_dir}")
    if result.config is not None and result.config.agent.algorithm == "independent":
        print(f"models:        {run_dir / 'checkpoints' / 'independent'} (stable-baselines3)")
        print(f"final eval:    {run_dir / 'eval' / 'final.json'}")
        return 0
    print(f"tensorboard:   tensorboard --logdir {run_dir / 'tensorboard'}")
    print(f"checkpoint:    {result.checkpoint}")
    best = checkpoint_dir(run_dir) / "best.pt"
    print(f"best:          {best} (best periodic evaluation: to look at, not to report)")
    print(f"final eval:    {run_dir / 'eval' / 'final.json'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.video and "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"  # must be set before mujoco is imported
    from mtrl.config import parse_int
    from mtrl.evaluation.command import evaluate_checkpoint

    evaluate_checkpoint(
        args.checkpoint,
        tasks=args.task,
        episodes=None if args.episodes is None else parse_int("--episodes", args.episodes),
        video=args.video,
        out=args.out,
        seed=None if args.seed is None else parse_int("--seed", args.seed),
        device=args.device,
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from mtrl.evaluation.export import export_task_policy

    out = export_task_policy(args.checkpoint, args.task, args.out)
    print(f"exported {args.task}'s path: {out} (evaluate with: mtrl eval {out})")
    return 0


SLURM_FLAGS = {  # --slurm-<key> -> its type; each overrides the sweep file's slurm.<key>
    "partition": str,
    "account": str,
    "qos": str,
    "constraint": str,
    "time_min": float,
    "mem_gb": float,
    "cpus": int,
    "gpus": int,
    "runs_per_job": int,
}


def _sweep(args: argparse.Namespace) -> int:
    from mtrl.errors import UsageError, counted
    from mtrl.experiments.sweep import (
        RUNNING_ELSEWHERE,
        check_backend,
        estimate_sweep,
        format_estimate,
        format_results,
        load_sweep,
        plan,
        plan_summary,
        run_sweep,
    )

    for flag, value in (("--max-parallel", args.max_parallel), ("--num-cpus", args.num_cpus)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be > 0, got {value}")
    backend = "local" if args.no_ray and args.backend is None else args.backend
    flags = {key: getattr(args, f"slurm_{key}") for key in SLURM_FLAGS}
    given = [
        f"--slurm-{key.replace('_', '-')}" for key, value in flags.items() if value is not None
    ]
    if (given or args.slurm_cluster) and backend != "slurm":
        raise UsageError(f"{(given or ['--slurm-cluster'])[0]} needs --backend slurm")
    sweep = load_sweep(args.sweep, seeds=args.seeds, out=args.out)
    slurm = sweep.slurm.merged(flags)
    cluster = args.slurm_cluster or "slurm"
    if args.estimate:
        print(format_estimate(estimate_sweep(sweep, say=print)))
        return 0
    if args.dry_run:  # the checks that need no cluster, then what a sweep would do
        backend = check_backend(sweep, backend, args.address, args.num_cpus, slurm=slurm,
                                cluster=cluster, submitting=False)  # fmt: skip
        planned = plan(sweep)
        print(plan_summary(f"{sweep.name} (dry run, nothing started)", planned))
        if backend == "slurm":
            from mtrl.experiments.slurm import describe_jobs, job_shape

            to_run = sum(row["status"] in ("new", "resume") for row in planned)
            shape = job_shape(sweep.cpus, sweep.gpus, slurm, sweep.name)
            print(describe_jobs(to_run, shape, slurm, cluster))
        print(format_results(planned))
        return 0
    results = run_sweep(
        sweep,
        address=args.address,
        max_parallel=args.max_parallel,
        num_cpus=args.num_cpus,
        backend=backend,
        slurm=slurm,
        cluster=cluster,
    )
    print(format_results(results))
    elsewhere = [r for r in results if r["status"] == RUNNING_ELSEWHERE]
    if elsewhere:
        print(
            f"mtrl: {len(elsewhere)} of {counted(len(results), 'run')} are being written by another process "
            "(running elsewhere) and were left alone; sweep again once they have ended"
        )
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        print(
            f"mtrl: {len(failed)} of {counted(len(results), 'run')} failed; rerun the sweep to retry them"
        )
        return 1
    return 0


def _tune(args: argparse.Namespace) -> int:
    from mtrl.experiments.tune import command

    return command(args)


def _report(args: argparse.Namespace) -> int:
    from mtrl.analysis.report import make_report

    report = make_report(
        args.run_dirs,
        args.out,
        bootstrap_reps=args.bootstrap_reps,
        bootstrap_seed=args.bootstrap_seed,
        mixed_protocols=args.mixed_protocols,
        methods=args.methods,
        groups=_report_groups(args.group),
    )
    for path in report["skipped"]:
        print(f"skipped (no evaluation yet): {path}")
    print((Path(args.out) / "table.md").read_text())
    for path in report["files"]:
        print(f"wrote {path}")
    return 0


def _report_groups(groups: list[list[str]] | None) -> dict[str, list[str]] | None:
    """``--group NAME LABEL...`` (repeated) as {name: labels}; a group without labels or a name
    given twice is one line."""
    from mtrl.errors import UsageError

    named: dict[str, list[str]] = {}
    for name, *labels in groups or []:
        if not labels:
            raise UsageError(f"--group {name!r} names no methods: --group NAME LABEL [LABEL ...]")
        if name in named:
            raise UsageError(f"--group {name!r} is given twice")
        named[name] = labels
    return named or None


def _presets(args: argparse.Namespace) -> int:
    from mtrl.presets import PRESETS_DIR, describe, names

    for title, sweeps in (("presets (mtrl train --config NAME)", False), ("sweeps", True)):
        found = names(sweeps=sweeps)
        print(f"{title}:" if not sweeps else f"\n{title} (mtrl sweep NAME):")
        width = max(map(len, found))
        for name in found:
            print(f"  {name:<{width}}  {describe(PRESETS_DIR / f'{name}.yaml')}")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    import yaml

    from mtrl.config import to_dict
    from mtrl.training.run import build_run_config

    config = build_run_config(args.config, args.overrides)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0


def config_keys_help() -> str:
    """Every config key, its default and its documentation, for ``mtrl train --help``."""
    import textwrap

    from mtrl.config import field_docs

    lines = ["config keys (key=value after the command; defaults shown):"]
    for key, (default, doc) in field_docs().items():
        shown = list(default) if isinstance(default, tuple) else default
        lines.append(f"  {key} = {shown!r}")
        lines += textwrap.wrap(doc, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def _bench(args: argparse.Namespace) -> int:
    from mtrl.experiments.bench import main as bench_main

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    from mtrl import __version__

    parser = argparse.ArgumentParser(prog="mtrl", description="Multi-task RL on Meta-World v3.")
    parser.add_argument("--version", action="version", version=f"mtrl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a multi-task agent",
        epilog=config_keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--config", help="a preset: a shipped one by name (mtrl presets lists them) or a YAML file"
    )
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    train.add_argument("--debug", action="store_true", help="show tracebacks")
    train.add_argument(
        "--track",
        action="store_true",
        help="log to Weights & Biases (project 'mtrl' unless wandb.project says; wandb.* keys)",
    )
    train.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. agent.critic=multihead"
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("eval", help="evaluate a saved policy")
    evaluate.add_argument(
        "checkpoint", help="a checkpoint file or a run directory (latest checkpoint)"
    )
    evaluate.add_argument("--task", action="append", help="a task to evaluate (repeatable)")
    # Integers are parsed by the handler, so that a bad one is one line as a config value's is.
    evaluate.add_argument("--episodes", default=None, help="episodes per task")
    evaluate.add_argument(
        "--video", help="write the first episode of each task to PATH (.mp4/.gif)"
    )
    evaluate.add_argument(
        "--out",
        help="JSON file for the results (default: the run's eval/ for a checkpoint in a run's "
        "checkpoints/, else next to the checkpoint)",
    )
    evaluate.add_argument("--seed", default=None, help="evaluation seed")
    evaluate.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    evaluate.add_argument("--debug", action="store_true", help="show tracebacks")
    evaluate.set_defaults(handler=_eval)

    export = commands.add_parser(
        "export", help="write one task's path of a task_routed policy as a small policy file"
    )
    export.add_argument("checkpoint", help="a checkpoint file or a run directory (latest)")
    export.add_argument("--task", required=True, help="the task whose path to export")
    export.add_argument("--out", required=True, help="the policy file to write")
    export.add_argument("--debug", action="store_true", help="show tracebacks")
    export.set_defaults(handler=_export)

    sweep = commands.add_parser("sweep", help="run a grid of presets x seeds (Ray if installed)")
    sweep.add_argument("sweep", help="a sweep file, or a shipped one by name (sweeps/<name>)")
    sweep.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (overrides the file)")
    sweep.add_argument("--out", default=None, help="where the run directories go")
    sweep.add_argument("--address", default=None, help="a Ray cluster to run on (default: local)")
    sweep.add_argument("--max-parallel", type=int, default=None, help="at most K runs at once")
    sweep.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray")
    sweep.add_argument("--no-ray", action="store_true", help="run one by one, without Ray")
    sweep.add_argument(
        "--backend",
        choices=("ray", "local", "slurm"),
        default=None,
        help="where the runs go: Ray (the default where installed), local (one by one), slurm "
        "(a Slurm job each, with submitit; the sweep file's slurm: section)",
    )
    for key, kind in SLURM_FLAGS.items():
        sweep.add_argument(
            f"--slurm-{key.replace('_', '-')}",
            dest=f"slurm_{key}",
            type=kind,
            default=None,
            help=f"each Slurm job's {key.replace('_', ' ')} (overrides the file's slurm.{key})",
        )
    sweep.add_argument(
        "--slurm-cluster",
        choices=("slurm", "local"),
        default=None,
        help="local: the Slurm backend's jobs as processes of this machine (submitit's local "
        "executor), to try a sweep before submitting it",
    )
    sweep.add_argument(
        "--estimate",
        action="store_true",
        help="machine-hours per run and in all, from a short timed window of each distinct run "
        "on this machine; starts no run of the sweep",
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="list every run and its status; start nothing"
    )
    sweep.add_argument("--debug", action="store_true", help="show tracebacks")
    sweep.set_defaults(handler=_sweep)

    tune = commands.add_parser(
        "tune", help="hyper-parameter search with Optuna (pruned, resumable, parallel trials)"
    )
    tune.add_argument("space", help="a search space YAML file (docs/tuning.md)")
    tune.add_argument("--out", default=None, help="where the study's runs go (over the file's)")
    tune.add_argument(
        "--storage", default=None, help="an Optuna database URL (default: <out>/study.db, SQLite)"
    )
    tune.add_argument("--jobs", type=int, default=1, help="trials run at once (processes)")
    tune.add_argument("--n-trials", type=int, default=None, help="trials in all (over the file's)")
    tune.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help="one study per gradient method (actor and critic), same budget: a table of the best",
    )
    tune.add_argument("--debug", action="store_true", help="show tracebacks")
    tune.set_defaults(handler=_tune)

    report = commands.add_parser("report", help="ablation tables and plots from run directories")
    report.add_argument("run_dirs", nargs="+", help="run directories, or directories holding them")
    report.add_argument("--out", default="report", help="where the tables and PNGs go")
    report.add_argument(
        "--bootstrap-reps",
        type=int,
        default=2000,
        help="stratified-bootstrap repetitions per interval (default 2000; rliable's examples "
        "use 50000 for published numbers)",
    )
    report.add_argument(
        "--bootstrap-seed", type=int, default=0, help="seed of the bootstrap resampling"
    )
    report.add_argument(
        "--mixed-protocols",
        action="store_true",
        help="report runs evaluated under different protocols in one table (marked as mixed)",
    )
    report.add_argument(
        "--methods",
        nargs="+",
        metavar="LABEL",
        help="report only these methods (their labels, quoted where they hold spaces), in this "
        "order; default: every method of the runs",
    )
    report.add_argument(
        "--group",
        nargs="+",
        action="append",
        metavar=("NAME", "LABEL"),
        help="draw these methods' curves and training statistics in a panel of their own, titled "
        "NAME (repeat for more panels; a method may sit in several, the methods in none go last)",
    )
    report.add_argument("--debug", action="store_true", help="show tracebacks")
    report.set_defaults(handler=_report)

    presets = commands.add_parser("presets", help="the presets and sweeps shipped with mtrl")
    presets.set_defaults(handler=_presets, debug=False)

    config = commands.add_parser("config", help="the resolved config of a preset and overrides")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    show = config_commands.add_parser("show", help="print the config a run would start from")
    show.add_argument("--config", help="a preset name or YAML file (default: the defaults)")
    show.add_argument("--debug", action="store_true", help="show tracebacks")
    show.add_argument("overrides", nargs="*", help="key=value overrides")
    show.set_defaults(handler=_config_show)

    bench = commands.add_parser(
        "bench", help="throughput: sgemm peak, update FLOP/s, env steps/s, the loop's time split"
    )
    bench.add_argument(
        "bench_args",
        nargs="*",
        help="--quick, --no-mt50, --hidden, --batch, --device, --rounds, --no-sharing, --no-busy",
    )
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    from mtrl.errors import USER_ERRORS

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":  # only `mtrl bench` passes its options through
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "bench":
        # Everything after the command word, in its order: parse_known_args would split an
        # option's value (``--device cpu``) from its flag.
        argv = sys.argv[1:] if argv is None else argv
        args.bench_args = argv[argv.index("bench") + 1 :]
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).split())  # one line, whatever the error text holds
        code = getattr(error, "exit_code", EXIT_BAD_INPUT)
        print(f"mtrl: error: {message}" if code else f"mtrl: {message}", file=sys.stderr)
        return code
    except BrokenPipeError:  # `mtrl presets | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # outside the training loop (which stops cleanly on its own)
        print("mtrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
