"""``mtrl report``: run directories -> ablation tables (Markdown, CSV, LaTeX), statistics and figures.

Reports read only run directories: ``config.yaml`` for the method label and env, ``metrics.jsonl``
for everything measured, ``run.json`` for the evaluation protocol and provenance. A run's score is
its FINAL evaluation: the ``final_eval`` record of ``metrics.jsonl`` (the numbers of
``eval/final.json``, which is read when the record is missing), per task, with the run's
``final_eval_episodes`` episodes per task. A run without one yet (running, interrupted, failed) is
scored by its last periodic evaluation instead, and its method is marked so in every table and
curve ("SAC (running, at 25k steps)"). It is never the ``best.pt`` checkpoint's evaluation:
picking the best of many noisy evaluations is biased upwards, and more so the more often a run
evaluated. A run with a file that is not what mtrl writes (truncated or garbage JSON, a config of
the wrong types, a success rate outside [0, 1]) is left out with a one-line warning naming the file
and why, never read as a number; where no run is left, the report stops with one line.

Statistics (``mtrl.analysis.stats``, after Agarwal et al. 2021, "Deep RL at the Edge of the Statistical
Precipice", whose library is rliable): a method's scores are a [seeds, tasks] matrix of final
success rates; its interquartile mean (IQM), mean, median and optimality gap get 95% stratified
bootstrap intervals (the seeds resampled within each task, percentile intervals, ``--bootstrap-reps``
repetitions, 2,000 by default where rliable's examples use 50,000; ``--bootstrap-seed`` fixes them).
Within an env every ordered pair of methods gets P(X > Y) with its interval, every method a
performance profile (the fraction of (seed, task) scores above each threshold) with bands, and the
learning curves show the IQM over seeds x tasks at each evaluation with a bootstrap band. A method
with one seed still gets its point estimates; its intervals collapse to the point (that is what the
CSV and JSON files hold) and the Markdown and LaTeX tables print them as "n/a"; its P(X > Y)
intervals come from resampling the other method's seeds alone (the CSV holds them, the figure
prints "1 seed" in their place).

Outputs under ``--out``: ``table.*`` (mean success with its interval, IQM, seeds), ``per_task.*``,
``aggregates.{csv,md,tex}``, ``probability_of_improvement.{csv,png}``, ``summary.json`` (all of
it, plus every run's protocol and provenance) and per env ``curves_<env>.png``,
``per_task_<env>.png``, ``aggregates_<env>.png``, ``performance_profile_<env>.png`` and, where runs
logged them, ``conflict_<env>.png`` and ``triad_<env>.png`` (the PCGrad paper's Fig. 5 panels:
conflict fraction, magnitude similarity and curvature over training, critic and actor) and
``plasticity_<env>.png`` (McLean et al. 2025's Fig. 4: dormant units and effective rank, IQM over
seeds); those figures draw each run's means over windows of training, not every logged point.
``methods`` (``--methods``) picks the methods reported, in its order; ``groups`` (``--group``)
draws the curves and those figures a panel per named group of methods.

Protocol: scores are comparable only when measured the same way, so within one env all runs must
agree on env, reward version, episode length, final-evaluation episodes, goal scheme and steps per
task (``PROTOCOL_KEYS``); otherwise the report stops with one line naming the two protocols, unless
``mixed_protocols`` is set, when the tables say "mixed protocols" and list them. Runs made before
``run.json`` recorded a protocol get one from their ``config.yaml``, with an unknown goal scheme.

This module loads the runs, groups them by method, checks their protocols and runs the report;
``mtrl.analysis.tables`` writes the tables and ``mtrl.analysis.figures`` draws the figures, both from
plain data (summaries, curves, score matrices), so the imports point one way: from here to them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtrl.analysis import stats
from mtrl.analysis.figures import (
    PROFILE_TAUS,
    plot_aggregates,
    plot_curves,
    plot_gradient_statistics,
    plot_heatmap,
    plot_improvement,
    plot_profile,
)
from mtrl.analysis.tables import write_tables
from mtrl.config import Config, ConfigError, from_dict, load_yaml, method_label, validate
from mtrl.envs import episode_steps
from mtrl.errors import warn, writing
from mtrl.training.logging import METRICS_FILE
from mtrl.training.run import COMPARED_PROTOCOL_FIELDS

CONFLICT_KEYS = ("gradients/critic/cosine_mean", "gradients/critic/conflict_fraction")
# The PCGrad paper's "tragic triad" (its Fig. 5): conflict, magnitude similarity, curvature.
TRIAD = ("conflict_fraction", "magnitude_similarity", "curvature")
TRIAD_KEYS = tuple(f"gradients/{role}/{name}" for role in ("critic", "actor") for name in TRIAD)
# McLean et al. 2025's Fig. 4 (mtrl.agents.plasticity): dormant units and effective rank.
PLASTICITY_KEYS = tuple(
    f"plasticity/{role}/{name}"
    for role in ("critic", "actor")
    for name in ("dormant_fraction", "effective_rank")
)
LOGGED_KEYS = tuple(dict.fromkeys(CONFLICT_KEYS + TRIAD_KEYS + PLASTICITY_KEYS))
TIMING_KEYS = ("charts/updates_per_s", "charts/time_update_fraction")  # the update-time column
PROTOCOL_KEYS = COMPARED_PROTOCOL_FIELDS
"""The protocol fields that must agree within one table (env, reward version, episode length,
final-evaluation episodes, goal scheme, steps per task; not the seed, evaluation episodes during
training or parameter counts, which may differ between methods), as ``mtrl.training.run`` defines them."""
UNKNOWN_GOAL_SCHEME = "unknown (run made before protocol records)"


@dataclass
class Run:
    path: Path
    env: str
    label: str
    seed: int
    task_success: dict[str, float]  # the final evaluation, per task
    curve: list[tuple[int, float]]  # (step, mean success) of every evaluation
    conflict: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    task_curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # per task
    protocol: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] | None = None
    parameters: dict[str, int | None] = field(default_factory=dict)  # actor, critic
    resumed_at: list[str] = field(default_factory=list)
    update_seconds: float | None = None  # median seconds per update over the logged windows
    plain: bool = False  # plain MT-SAC (mean gradients, shared bodies): the cost column's unit
    # Without a final evaluation yet: the run's status ("running", "interrupted", "failed") and
    # the step of the periodic evaluation that scores it instead; None for a finished run.
    unfinished: tuple[str, int] | None = None
    # (device, precision, processor, its matmul instruction sets) the update time was measured
    # on; None where unrecorded.
    machine: tuple[str | None, ...] = (None, None, None, None)

    @property
    def score(self) -> float:
        return float(np.mean(list(self.task_success.values())))

    def protocol_key(self) -> tuple:
        return tuple(self.protocol.get(key) for key in PROTOCOL_KEYS)


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories given directly or anywhere below the given directories."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"no such run directory: {path}")
        if (path / "config.yaml").is_file():
            found.append(path)
        else:
            found += sorted(p.parent for p in path.rglob("config.yaml"))
    if not found:
        raise ConfigError(
            f"no run directories (with config.yaml) under {', '.join(map(str, paths))}"
        )
    return list(dict.fromkeys(found))


# ------------------------------------------------------------------------------ reading runs
class RunFileError(ConfigError):
    """A file of a run directory that is not what mtrl writes there (corrupt, truncated, edited):
    the run is left out of the report; the message names the file and why."""


NON_FINITE = ("nan", "inf", "-inf")  # how mtrl.training.logging writes a non-finite scalar


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rate(value: Any, what: str, file: Path) -> float:
    """A success rate: a number in [0, 1] (NaN is not one)."""
    if not (_is_number(value) and 0 <= value <= 1):
        raise RunFileError(f"{file}: {what} {value!r} is not a success rate in [0, 1]")
    return float(value)


def _step(value: Any, what: str, file: Path) -> int:
    if not (_is_number(value) and value >= 0 and float(value).is_integer()):
        raise RunFileError(f"{file}: {what} {value!r} is not a step")
    return int(value)


def _logged_number(value: Any, what: str, file: Path) -> float:
    """A logged scalar: a number, or the text of a non-finite one."""
    if _is_number(value) or value in NON_FINITE:
        return float(value)
    raise RunFileError(f"{file}: {what} {value!r} is not a number")


def _task_values(record: dict, file: Path, where: str = "") -> dict[str, float]:
    """The record's success rate per task (``where``: its line, for the error)."""
    prefix, suffix = "tasks/", "/success_rate"
    return {
        key[len(prefix) : -len(suffix)]: _rate(value, f"{where}{key}", file)
        for key, value in record.items()
        if key.startswith(prefix) and key.endswith(suffix)
    }


def _read_text(file: Path) -> str:
    try:
        return file.read_text()
    except UnicodeDecodeError:
        raise RunFileError(f"{file}: not UTF-8 text") from None
    except OSError as error:
        raise RunFileError(f"{file}: cannot read ({error.strerror or error})") from None


def _read_json(file: Path) -> dict | None:
    """A JSON object file; None where there is none."""
    if not file.exists():
        return None
    try:
        data = json.loads(_read_text(file))
    except ValueError:
        raise RunFileError(f"{file}: not valid JSON") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{file}: not a JSON object")
    return data


def _read_records(run_dir: Path) -> list[dict]:
    """``metrics.jsonl``'s records, each an object with a kind and a step and its values of the
    types mtrl writes; only a torn last line (a kill mid-write) is skipped."""
    file = run_dir / METRICS_FILE
    if not file.exists():
        return []
    text = _read_text(file)
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        where = f"line {number}:"
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if number == len(lines) and not text.endswith("\n"):
                continue
            raise RunFileError(f"{file}: {where} not a JSON object")
        if not isinstance(record.get("kind"), str) or "step" not in record:
            raise RunFileError(f"{file}: {where} a record without its kind and step")
        _step(record["step"], f"{where} step", file)
        if record["kind"] in ("eval", "final_eval"):
            key = "eval/mean_success_rate"
            if key in record:
                _rate(record[key], f"{where} {key}", file)
            _task_values(record, file, f"{where} ")
        for key in (*LOGGED_KEYS, *TIMING_KEYS):
            if key in record:
                _logged_number(record[key], f"{where} {key}", file)
        records.append(record)
    return records


def _read_config(run_dir: Path) -> Config:
    file = run_dir / "config.yaml"
    try:
        data = load_yaml(file)
        if not data:
            raise ConfigError("empty: no settings of the run")
        return validate(from_dict(data))
    except UnicodeDecodeError:
        raise RunFileError(f"{file}: not UTF-8 text") from None
    except OSError as error:
        raise RunFileError(f"{file}: cannot read ({error.strerror or error})") from None
    except ConfigError as error:
        raise RunFileError(f"{file}: {str(error).removeprefix(f'{file}: ')}") from None


def _read_final(run_dir: Path) -> tuple[int | None, dict[str, float]] | None:
    """``eval/final.json``'s step and success per task; None where there is none."""
    file = run_dir / "eval" / "final.json"
    final = _read_json(file)
    if final is None:
        return None
    tasks = final.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise RunFileError(f"{file}: tasks is not an object of tasks")
    rates = {}
    for name, result in tasks.items():
        if not isinstance(result, dict) or "success_rate" not in result:
            raise RunFileError(f"{file}: tasks.{name} is not an object with a success_rate")
        rates[name] = _rate(result["success_rate"], f"tasks.{name}.success_rate", file)
    step = _step(final["step"], "step", file) if "step" in final else None
    return step, rates


def _read_info(run_dir: Path) -> dict[str, Any]:
    """``run.json`` (empty where there is none), its fields that the report reads checked."""
    file = run_dir / "run.json"
    info = _read_json(file) or {}
    protocol = info.get("protocol")
    if protocol is not None:
        if not isinstance(protocol, dict):
            raise RunFileError(f"{file}: protocol is not an object")
        for key in PROTOCOL_KEYS:
            value = protocol.get(key)
            if not (value is None or isinstance(value, (str, int, float))):
                raise RunFileError(f"{file}: protocol.{key} {value!r} is not a plain value")
        steps = protocol.get("max_episode_steps")
        if steps is not None and not (_is_number(steps) and steps >= 0):
            raise RunFileError(f"{file}: protocol.max_episode_steps {steps!r} is not a step count")
    for key, kind in (("resumed_at", list), ("parameter_counts", dict)):
        if info.get(key) is not None and not isinstance(info[key], kind):
            name = "a list" if kind is list else "an object"
            raise RunFileError(f"{file}: {key} {info[key]!r} is not {name}")
    return info


def run_protocol(config: Config, info: dict) -> dict[str, Any]:
    """The run's evaluation protocol: ``run.json``'s record, or for runs made before it existed,
    what ``config.yaml`` says (the goal scheme is then unknown)."""
    from mtrl.envs import is_metaworld

    recorded = info.get("protocol")
    if isinstance(recorded, dict):
        protocol = dict(recorded)
    else:  # as mtrl.training.run writes it: no reward version outside Meta-World
        metaworld = is_metaworld(config.env.name)
        protocol = {
            "env": config.env.name,
            "reward_version": config.env.reward_version if metaworld else None,
            "max_episode_steps": config.env.max_episode_steps,
            "final_eval_episodes": config.final_eval_episodes,
            "goal_scheme": UNKNOWN_GOAL_SCHEME,
            "steps_per_task": config.total_steps,
            "seed": config.seed,
        }
    protocol["max_episode_steps"] = episode_steps(
        str(protocol.get("env", config.env.name)), protocol.get("max_episode_steps")
    )
    return protocol


def _parameters(protocol: dict, info: dict) -> dict[str, int | None]:
    counts = info.get("parameter_counts") if isinstance(info.get("parameter_counts"), dict) else {}
    return {
        "actor": protocol.get("actor_parameters", counts.get("actor")),
        "critic": protocol.get("critic_parameters", counts.get("critic")),
    }


def load_run(path: Path) -> Run | None:
    """A run scored by its final evaluation, or where it has none yet by its last periodic one
    (``Run.unfinished`` says so); None when it has no evaluation at all. A file that is not what
    mtrl writes (corrupt, truncated, a success rate outside [0, 1]) is a RunFileError naming it."""
    config = _read_config(path)
    records = _read_records(path)
    evaluations = [r for r in records if r["kind"] in ("eval", "final_eval")]
    finals = [r for r in evaluations if r["kind"] == "final_eval"]
    curve = [
        (int(r["step"]), float(r["eval/mean_success_rate"]))
        for r in evaluations
        if "eval/mean_success_rate" in r
    ]
    metrics = path / METRICS_FILE
    task_curve = [(int(r["step"]), _task_values(r, metrics)) for r in evaluations]
    info = _read_info(path)
    unfinished = None
    if finals:
        task_success = _task_values(finals[-1], metrics)
    elif (final := _read_final(path)) is not None:  # the record may be lost (a torn last line):
        step, task_success = final  # eval/final.json holds the same numbers
        if step is not None:
            curve.append((step, float(np.mean(list(task_success.values())))))
            task_curve.append((step, dict(task_success)))
    else:  # no final evaluation yet: the last periodic one with per-task values stands in
        periodic = [(step, values) for step, values in task_curve if values]
        if not periodic:
            return None
        step, task_success = periodic[-1]
        status = info.get("status")
        unfinished = (status if status in ("interrupted", "failed") else "running", step)
    if not task_success:
        return None
    conflict = {
        key: [(int(r["step"]), float(r[key])) for r in records if r["kind"] == "train" and key in r]
        for key in LOGGED_KEYS
    }
    protocol = run_protocol(config, info)
    provenance = info.get("provenance") if isinstance(info.get("provenance"), dict) else None
    return Run(
        path,
        config.env.name,
        method_label(config),
        config.seed,
        task_success,
        curve,
        conflict,
        task_curve,
        protocol,
        provenance,
        _parameters(protocol, info),
        list(info.get("resumed_at") or []),
        _update_seconds(records),
        config.agent.algorithm == "mt_sac"
        and (config.agent.critic_grad, config.agent.actor_grad) == ("mean", "mean")
        and (config.agent.critic, config.agent.actor) == ("shared", "shared"),
        unfinished,
        _machine(info),
    )


def _machine(info: dict[str, Any]) -> tuple[str | None, ...]:
    """(device, precision, processor, instruction sets) from run.json: the GPU's name on CUDA,
    else the CPU's and its matmul instruction sets (one name can cover CPUs with and without
    AVX-512 or AMX)."""

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) and value else None

    provenance = info.get("provenance") if isinstance(info.get("provenance"), dict) else {}
    hardware = provenance.get("hardware") if isinstance(provenance.get("hardware"), dict) else {}
    device = text(info.get("device"))
    kind = device.split(":")[0] if device else None
    processor = text(hardware.get("gpu" if kind == "cuda" else "cpu"))
    isa = hardware.get("cpu_isa") if kind != "cuda" else None
    isa = " ".join(map(str, isa)) if isinstance(isa, list) else None
    return kind, text(info.get("precision")), processor, isa


def same_machine(a: tuple, b: tuple) -> bool:
    """Whether two runs' update times may be compared: the same device, precision, processor and
    instruction sets wherever both recorded them (runs made before one was recorded match on the
    rest)."""
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def relative_update_cost(runs: list[Run], units: list[Run]) -> float | None:
    """The mean of ``runs``' seconds per update over the mean, across the same runs, of the
    ``units`` (plain MT-SAC runs) measured on each run's machine; None where a run lacks a timing
    or has no unit on its machine: a ratio across hardware or precisions would say more about the
    machines than about the methods."""
    own, matched = [], []
    for run in runs:
        same = [
            u.update_seconds
            for u in units
            if u.update_seconds and same_machine(run.machine, u.machine)
        ]
        if run.update_seconds is None or not same:
            return None
        own.append(run.update_seconds)
        matched.append(float(np.mean(same)))
    return float(np.mean(own)) / float(np.mean(matched))


def _update_seconds(records: list[dict]) -> float | None:
    """Seconds per gradient update, the median over the logged windows after the first (which
    holds the compiling of the gradient passes): each window's update share of its wall-clock
    over its updates. None for runs that logged no window timing (the independent baseline)."""
    rate, fraction = TIMING_KEYS
    per_window = [
        float(r[fraction]) / float(r[rate])
        for r in records
        if r["kind"] == "train" and float(r.get(rate, 0)) > 0 and fraction in r
    ]
    per_window = per_window[1:] or per_window
    return float(np.median(per_window)) if per_window else None


def _common_tasks(runs: list[Run]) -> list[str]:
    """Tasks every run evaluated, in the first run's order."""
    shared = set.intersection(*(set(run.task_success) for run in runs))
    return [task for task in runs[0].task_success if task in shared]


@dataclass
class MethodRow:
    env: str
    label: str
    runs: list[Run]

    @property
    def scores(self) -> np.ndarray:
        return np.array([run.score for run in self.runs])

    @property
    def tasks(self) -> list[str]:
        return _common_tasks(self.runs)

    def score_matrix(self, tasks: list[str] | None = None) -> np.ndarray:
        """Final success rates [seeds, tasks] (rliable's layout)."""
        tasks = self.tasks if tasks is None else tasks
        return np.array([[run.task_success[t] for t in tasks] for run in self.runs], dtype=float)

    def parameters(self) -> dict[str, str]:
        """Actor and critic parameter counts ("?" where unrecorded; all values if seeds differ)."""
        out = {}
        for part in ("actor", "critic"):
            values = list(dict.fromkeys(run.parameters.get(part) for run in self.runs))
            out[part] = "/".join("?" if v is None else str(v) for v in values)
        return out

    def update_seconds(self) -> float | None:
        """The mean over seeds of each run's seconds per update (None if any run lacks it)."""
        values = [run.update_seconds for run in self.runs]
        return None if any(v is None for v in values) else float(np.mean(values))

    def summary(self, reps: int = stats.DEFAULT_REPS, seed: int = 0) -> dict:
        estimates = stats.aggregate_estimates(self.score_matrix(), reps=reps, seed=seed)
        mean = estimates["mean"]
        return {
            "env": self.env,
            "method": self.label,
            "mean": mean.point,
            "ci_low": mean.low,
            "ci_high": mean.high,
            "iqm": estimates["iqm"].point,
            "seeds": len(self.runs),
            "tasks": len(self.tasks),
            "aggregates": {
                name: {"point": e.point, "low": e.low, "high": e.high}
                for name, e in estimates.items()
            },
            "parameters": self.parameters(),
            "update_seconds": self.update_seconds(),
            "per_seed": {str(run.seed): run.score for run in self.runs},
            "per_task": {
                task: float(np.mean([run.task_success[task] for run in self.runs]))
                for task in self.runs[0].task_success
                if all(task in run.task_success for run in self.runs)
            },
        }


def steps_text(steps: int) -> str:
    """A step count for a label: 25000 -> "25k", 1500000 -> "1.5M", 300 -> "300"."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if steps >= size:
            return f"{steps / size:.4g}{unit}"
    return str(steps)


def unfinished_mark(runs: list[Run]) -> str:
    """The mark ' (running, at 25k steps)' of a method with runs scored by a periodic evaluation
    (the least advanced one's status and step), else ''."""
    unfinished = [run.unfinished for run in runs if run.unfinished is not None]
    if not unfinished:
        return ""
    status, step = min(unfinished, key=lambda item: item[1])
    return f" ({status}, at {steps_text(step)} steps)"


def group_runs(runs: list[Run]) -> list[MethodRow]:
    """A row per (env, method label); a method with unfinished runs is labelled so
    (``unfinished_mark``), in its tables, curves and summary alike."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.env, run.label)].append(run)
    return [
        MethodRow(env, label + unfinished_mark(rs), sorted(rs, key=lambda r: r.seed))
        for (env, label), rs in groups.items()
    ]


def select_methods(runs: list[Run], methods: list[str] | None) -> list[Run]:
    """The runs of the methods named (``--methods``; all where None), or a one-line ConfigError
    naming the unknown ones and listing those the runs have."""
    if methods is None:
        return runs
    known = sorted({run.label for run in runs})
    unknown = [name for name in dict.fromkeys(methods) if name not in known]
    if unknown:
        raise ConfigError(
            f"--methods: no runs of {', '.join(map(repr, unknown))}; the runs' methods are "
            f"{', '.join(map(repr, known))}"
        )
    return [run for run in runs if run.label in methods]


def check_groups(runs: list[Run], groups: dict[str, list[str]] | None) -> None:
    """A one-line ConfigError for a ``--group`` naming a method none of the reported runs has
    (a typo would otherwise leave its panel short without a word)."""
    known = sorted({run.label for run in runs})
    for name, members in (groups or {}).items():
        unknown = [label for label in dict.fromkeys(members) if label not in known]
        if not members or unknown:
            raise ConfigError(
                f"--group {name!r}: "
                + (f"no runs of {', '.join(map(repr, unknown))}" if unknown else "no methods")
                + f"; the reported methods are {', '.join(map(repr, known))}"
            )


# ---------------------------------------------------------------------------------- protocol
def _protocol_text(protocol: dict) -> str:
    """The protocol's fields, those it does not have (None: no reward version off Meta-World)
    left out."""
    return ", ".join(
        f"{key} {protocol[key]}" for key in PROTOCOL_KEYS if protocol.get(key) is not None
    )


def env_protocol(env: str, rows: list[MethodRow], mixed_protocols: bool = False) -> dict[str, Any]:
    """The env's protocol for its tables; refuses runs measured differently unless told."""
    runs = [run for row in rows for run in row.runs]
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.protocol_key(), []).append(run)
    if len(groups) > 1 and not mixed_protocols:
        (first, *_), (other, *_) = list(groups.values())[:2]
        keys = [k for k in PROTOCOL_KEYS if first.protocol.get(k) != other.protocol.get(k)]
        left = ", ".join(f"{k} {first.protocol.get(k)}" for k in keys)
        right = ", ".join(str(other.protocol.get(k)) for k in keys)
        raise ConfigError(
            f"runs in one table have different protocols: {left} ({first.path}) vs {right} "
            f"({other.path}); pass --mixed-protocols to report them together"
        )
    protocols = []
    for members in groups.values():
        entry = {key: members[0].protocol.get(key) for key in PROTOCOL_KEYS}
        methods: dict[str, list[int]] = defaultdict(list)
        for run in members:
            methods[run.label].append(run.seed)
        entry["methods"] = {label: sorted(seeds) for label, seeds in methods.items()}
        protocols.append(entry)
    return {
        "env": env,
        "mixed": len(groups) > 1,
        "protocols": protocols,
        "parameters": {row.label: row.parameters() for row in rows},
    }


def protocol_line(protocol: dict) -> str:
    """One line for under a table: the protocol (or the mixed ones) and parameters per method."""
    params = "; ".join(
        f"{label} {p['actor']}/{p['critic']}" for label, p in protocol["parameters"].items()
    )
    if protocol["mixed"]:
        parts = []
        for k, entry in enumerate(protocol["protocols"], 1):
            who = ", ".join(
                f"{label} seeds {','.join(map(str, seeds))}"
                for label, seeds in entry["methods"].items()
            )
            parts.append(f"({k}) {_protocol_text(entry)} [{who}]")
        text = f"mixed protocols: {' '.join(parts)}"
    else:
        text = _protocol_text(protocol["protocols"][0])
    return (
        f"Protocol ({protocol['env']}): {text}. Parameters (actor/critic): {params}. "
        "Score: final evaluation success rate."
    )


# ------------------------------------------------------------------------------ statistics
def improvement_rows(
    rows: list[MethodRow], reps: int = stats.DEFAULT_REPS, seed: int = 0
) -> list[dict]:
    """P(X > Y) with its interval for every ordered pair of methods in one env, over the tasks
    both evaluated (each unordered pair is bootstrapped once; P(Y > X) is 1 - P(X > Y) exactly,
    resample by resample, so its interval is the mirror image), and the runs per method at which
    the interval would reach 0.5 if the observed effect held (``stats.runs_to_separate``, from the
    smaller of the two methods' numbers of runs; None with one run)."""
    out: list[dict] = []
    for i, x in enumerate(rows):
        for y in rows[i + 1 :]:
            tasks = [t for t in x.tasks if t in set(y.tasks)]
            if not tasks:
                continue
            e = stats.probability_of_improvement_estimate(
                x.score_matrix(tasks), y.score_matrix(tasks), reps=reps, seed=seed
            )
            runs = min(len(x.runs), len(y.runs))
            separate = stats.runs_to_separate(e, runs) if runs >= 2 else None
            common = {"env": x.env, "tasks": len(tasks), "runs": runs, "runs_to_separate": separate}
            out.append(
                {**common, "method_x": x.label, "method_y": y.label}
                | {"probability": e.point, "ci_low": e.low, "ci_high": e.high}
            )
            out.append(
                {**common, "method_x": y.label, "method_y": x.label}
                | {"probability": 1 - e.point, "ci_low": 1 - e.high, "ci_high": 1 - e.low}
            )
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def _run_record(run: Run) -> dict:
    return {
        "path": str(run.path),
        "env": run.env,
        "method": run.label,
        "seed": run.seed,
        "score": run.score,
        "protocol": run.protocol,
        "parameters": run.parameters,
        "provenance": run.provenance,
        "resumed_at": run.resumed_at,
    }


def make_report(
    paths: list[str | Path],
    out: str | Path,
    bootstrap_reps: int = stats.DEFAULT_REPS,
    bootstrap_seed: int = 0,
    mixed_protocols: bool = False,
    methods: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
) -> dict:
    """Writes the tables, statistics and figures under ``out``, of the runs of ``methods`` (their
    labels, in that order; all, by label, where None). ``groups`` (name -> labels) draws the
    curves and the logged statistics a panel per group (the methods in none after them), so that
    a grid's figures compare few methods at a time; the tables keep every method.

    A run without a final evaluation yet is scored by its last periodic evaluation, and its
    method's label says so ("SAC (running, at 25k steps)"); its curve ends in an open marker.
    Returns {"summaries" (per method: the table's numbers and the aggregates), "improvement",
    "protocols", "files", "skipped" (runs without any evaluation yet), "left_out" (why each
    run with a corrupt file was left out; each is a warning on stderr too)}. Every interval uses
    ``bootstrap_reps`` stratified resamples seeded with ``bootstrap_seed`` (each estimate from
    the seed itself, so one method's numbers do not depend on which other methods are in the
    report). An output that cannot be written is one OutputError naming the path.
    """
    if bootstrap_reps < 1:
        raise ConfigError(f"--bootstrap-reps must be > 0, got {bootstrap_reps}")
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    runs, skipped, left_out = [], [], []
    for path in find_run_dirs(paths):
        try:
            run = load_run(path)
        except RunFileError as error:
            left_out.append(str(error))
            continue
        (runs if run is not None else skipped).append(run if run is not None else path)
    if not runs and left_out:
        more = f"; {len(left_out) - 1} more runs left out" if len(left_out) > 1 else ""
        waiting = f"; {len(skipped)} without an evaluation yet" if skipped else ""
        raise ConfigError(f"no run to report: {left_out[0]}{more}{waiting}")
    if not runs:
        raise ConfigError("none of the runs has an evaluation yet")
    for reason in left_out:
        warn(f"run left out of the report: {reason}")
    runs = select_methods(runs, methods)
    check_groups(runs, groups)
    order = {label: k for k, label in enumerate(methods or [])}
    rows = sorted(group_runs(runs), key=lambda r: (r.env, order.get(r.runs[0].label, 0), r.label))
    envs = list(dict.fromkeys(row.env for row in rows))
    protocols = {
        env: env_protocol(env, [r for r in rows if r.env == env], mixed_protocols) for env in envs
    }
    with writing(out):  # a read-only directory, a full disk: one line naming the path
        written, summaries, improvement = _write_report(
            out, rows, protocols, bootstrap_reps, bootstrap_seed, groups
        )
    return {
        "summaries": summaries,
        "improvement": improvement,
        "protocols": protocols,
        "files": written,
        "skipped": skipped,
        "left_out": left_out,
    }


def _write_report(
    out: Path,
    rows: list[MethodRow],
    protocols: dict[str, dict],
    reps: int,
    seed: int,
    groups: dict[str, list[str]] | None = None,
) -> tuple[list[Path], list[dict], list[dict]]:
    """The tables, figures and summary.json of ``make_report``; returns the files written, the
    summaries and the probability-of-improvement rows."""
    envs = list(protocols)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [row.summary(reps, seed) for row in rows]
    for env in envs:  # the update-time cost column: relative to plain MT-SAC in the same env
        env_rows = [(row, s) for row, s in zip(rows, summaries, strict=True) if row.env == env]
        plain = [row for row, _ in env_rows if all(r.plain for r in row.runs)]
        units = plain[0].runs if plain else []
        for row, s in env_rows:
            s["update_cost"] = relative_update_cost(row.runs, units)
            if s["update_cost"] is None and s["update_seconds"] is not None and units:
                s["update_cost_note"] = "other hardware"
    improvement = [
        item
        for env in envs
        for item in improvement_rows([r for r in rows if r.env == env], reps, seed)
    ]
    lines = {env: protocol_line(p) for env, p in protocols.items()}
    written = write_tables(out, summaries, improvement, lines)
    profiles: dict[str, dict] = {}
    for env in envs:
        env_rows = [row for row in rows if row.env == env]
        env_summaries = [s for s in summaries if s["env"] == env]
        tag = _slug(env)
        curves = {row.label: [(run.task_curve, run.curve) for run in row.runs] for row in env_rows}
        unfinished = {row.label for row in env_rows if unfinished_mark(row.runs)}
        # The groups name methods by their runs' labels; the rows' labels may carry a mark.
        marked = {row.runs[0].label: row.label for row in env_rows}
        env_groups = groups and {
            name: [marked[label] for label in members if label in marked]
            for name, members in groups.items()
        }
        plot_curves(
            curves,
            out / f"curves_{tag}.png",
            f"{env}: success rate during training",
            reps,
            seed,
            unfinished,
            env_groups,
        )
        plot_heatmap(env_summaries, out / f"per_task_{tag}.png", f"{env}: final success per task")
        plot_aggregates(
            env_summaries, out / f"aggregates_{tag}.png", f"{env}: final success (95% CIs)"
        )
        profiles[env] = plot_profile(
            {row.label: row.score_matrix() for row in env_rows},
            out / f"performance_profile_{tag}.png",
            f"{env}: performance profile (95% CIs)",
            reps,
            seed,
        )
        written += [
            out / f"curves_{tag}.png",
            out / f"per_task_{tag}.png",
            out / f"aggregates_{tag}.png",
            out / f"performance_profile_{tag}.png",
        ]
        for name, keys, title, aggregate, columns in (
            ("conflict", CONFLICT_KEYS, f"{env}: critic gradient conflict", "mean", 3),
            (
                "triad",
                TRIAD_KEYS,
                f"{env}: the tragic triad (critic above, actor below)",
                "mean",
                3,
            ),
            ("plasticity", PLASTICITY_KEYS, f"{env}: plasticity (IQM over seeds)", "iqm", 2),
        ):
            series = {
                key: {
                    row.label: [run.conflict.get(key, []) for run in row.runs] for row in env_rows
                }
                for key in keys
            }
            path = out / f"{name}_{tag}.png"
            drawn = plot_gradient_statistics(
                series, path, title, reps, seed, aggregate, columns, env_groups
            )
            if drawn:
                written.append(path)
    plot_improvement(summaries, improvement, out / "probability_of_improvement.png")
    written.append(out / "probability_of_improvement.png")
    summary = {
        "score": "final evaluation success rate per task (never best.pt)",
        "bootstrap": {
            "reps": reps,
            "seed": seed,
            "confidence": stats.CONFIDENCE,
            "method": "percentile; seeds resampled within each task (stratified)",
        },
        "methods": summaries,
        "probability_of_improvement": improvement,
        "performance_profiles": {
            env: {
                "taus": PROFILE_TAUS.tolist(),
                "methods": {
                    label: {key: value.tolist() for key, value in profile.items()}
                    for label, profile in env_profiles.items()
                },
            }
            for env, env_profiles in profiles.items()
        },
        "protocols": {env: {**p, "line": lines[env]} for env, p in protocols.items()},
        "runs": [_run_record(run) for row in rows for run in row.runs],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    written.append(out / "summary.json")
    return written, summaries, improvement
