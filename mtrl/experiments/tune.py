"""``mtrl tune``: hyper-parameter search with Optuna over a preset's config keys.

A search space is a YAML file::

    name: synthetic_lr            # the study's name (default: the file's name)
    preset: synthetic             # a shipped preset's name, or a file (relative to this one)
    overrides: [total_steps=3000] # applied to every trial
    params:                       # config keys -> distributions
      agent.actor_lr: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
      agent.batch_size_per_task: {type: int, low: 16, high: 128, step: 16}
      agent.critic: {type: categorical, choices: [shared, multihead]}
    objective: final_mean         # final_ or last_eval_ + mean, iqm (success rates) or return
    n_trials: 20                  # the study's trials in all (complete or pruned)
    sampler: tpe                  # tpe, random; or {name: tpe, n_startup_trials: 5}
    pruner: median                # median, successive_halving, threshold, none; or a mapping
    seed: 0                       # the sampler's seed
    out: runs/tune/synthetic_lr   # default: runs/tune/<name>

Every trial is an ordinary run in its own process and run directory (``<out>/trial_<k>``), so a
trial that fails leaves the others alone. The trial process reports each periodic evaluation to
the study (``PruneTrial``); a trial the pruner stops ends cleanly at that step, with a checkpoint,
``run.json`` saying it was stopped by the callback, and ``trial.json`` saying it was pruned.

The study lives in a database (``<out>/study.db``, SQLite, unless ``--storage`` names another), and
the command is its own resume: run again, it tells the study what trials that ended while no
command watched them came to, resumes from its last checkpoint (same trial, same parameters) every
trial a killed command left running, and asks new trials only up to ``n_trials`` complete or
pruned ones. A failed trial does not count: a rerun asks a new one in its place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtrl.analysis.stats import interquartile_mean
from mtrl.callbacks import Callback
from mtrl.config import Config, ConfigError, _coerce, field_docs, load_yaml, to_dict
from mtrl.errors import (
    RunError,
    RunFinishedError,
    RunLockedError,
    UsageError,
    UserError,
    counted,
    warn,
    writing,
)
from mtrl.experiments.sweep import _as_overrides, _slug, _unknown, run_state
from mtrl.extras import require
from mtrl.presets import resolve
from mtrl.specs import shown, suggest_suffix
from mtrl.training.logging import read_metrics
from mtrl.training.run import build_run_config
from mtrl.training.session import has_checkpoint, read_run_info

SPACE_KEYS = {
    "name",
    "preset",
    "overrides",
    "params",
    "objective",
    "n_trials",
    "sampler",
    "pruner",
    "seed",
    "out",
}
DISTRIBUTIONS = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}
OBJECTIVES = {  # name -> (the metrics.jsonl record it scores, the tasks' metric, how they pool)
    "final_mean": ("final_eval", "success_rate", "mean"),
    "final_iqm": ("final_eval", "success_rate", "iqm"),
    "last_eval_mean": ("eval", "success_rate", "mean"),
    "last_eval_iqm": ("eval", "success_rate", "iqm"),
    "final_return": ("final_eval", "return", "mean"),
    "last_eval_return": ("eval", "return", "mean"),
}
RESULT_FIELDS = {"success_rate": "success_rate", "return": "mean_return"}
"""The ``TaskResult`` field of each metric of an evaluation record."""
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "successive_halving", "threshold", "none")
TUNE_SETS = {"run_dir": "each trial's run directory"}
"""Keys the tuner sets on every trial itself: a space that sets one is refused."""
METHOD_KEYS = ("agent.critic_grad", "agent.actor_grad")
"""The keys ``--methods`` sets to each method: dropped from the space in that mode."""
TRIAL_DEFAULTS = ("torch_threads=1", "progress=false")
"""Every trial's keys before the space's overrides (which may change them): trials run side by
side, one thread each."""
TRIAL_FILE = "trial.json"  # in a pruned trial's run directory: which trial, pruned where
ELSEWHERE_EXIT = 3  # a trial process whose run directory another process writes


@dataclass(frozen=True)
class Param:
    """One config key's distribution; ``choices`` that are lists are kept as their JSON text
    (Optuna's categorical values are scalars), which an override reads back as the list."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        from optuna import distributions

        if self.kind == "float":
            return distributions.FloatDistribution(
                self.low, self.high, log=self.log, step=self.step
            )
        if self.kind == "int":
            return distributions.IntDistribution(
                self.low, self.high, log=self.log, step=self.step or 1
            )
        return distributions.CategoricalDistribution(self.choices)

    def extremes(self) -> tuple[Any, ...]:
        """The values whose configs are checked before a study starts: the bounds, or every choice."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)

    def override(self, value: Any) -> str:
        return f"{self.key}={value!r}" if isinstance(value, float) else f"{self.key}={value}"

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, (), False)}


@dataclass(frozen=True)
class Space:
    name: str
    preset: Path | None
    overrides: tuple[str, ...]
    params: tuple[Param, ...]
    objective: str
    n_trials: int
    sampler: tuple[str, dict[str, Any]]
    pruner: tuple[str, dict[str, Any]]
    seed: int
    out: Path

    def trial_overrides(self, params: dict[str, Any]) -> list[str]:
        by_key = {param.key: param for param in self.params}
        return [*self.overrides, *(by_key[key].override(value) for key, value in params.items())]

    def config(self, params: dict[str, Any]) -> Config:
        return build_run_config(self.preset, self.trial_overrides(params))

    def distributions(self) -> dict[str, Any]:
        return {param.key: param.distribution() for param in self.params}

    def fingerprint(self) -> str:
        """What a study may not change between commands: the trials' base config (preset and
        overrides, resolved), the distributions and the objective."""
        return json.dumps(
            {
                "config": to_dict(build_run_config(self.preset, list(self.overrides))),
                "params": [param.record() for param in self.params],
                "objective": self.objective,
            },
            sort_keys=True,
        )

    def for_method(self, method: str) -> Space:
        """The space of one method of ``--methods``: the method on actor and critic, the space's
        own keys for them dropped; the rest (steps, distributions, trials, seed) unchanged."""
        return dataclasses.replace(
            self,
            name=f"{self.name}/{method}",
            overrides=(*self.overrides, *(f"{key}={method}" for key in METHOD_KEYS)),
            params=tuple(param for param in self.params if param.key not in METHOD_KEYS),
            out=self.out / _slug(method),
        )


# ----------------------------------------------------------------------------- the space file
def _named(value: Any, choices: tuple[str, ...], what: str, where: str) -> tuple[str, dict]:
    """``name`` or ``{name: ..., option: value}`` -> (name, options)."""
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, dict) and isinstance(value.get("name"), str):
        options = {str(key): option for key, option in value.items() if key != "name"}
        name = value["name"]
    else:
        raise ConfigError(
            f"{where}: {what} must be one of {', '.join(choices)}, or a mapping with its name: "
            f"and options, got {shown(value)}"
        )
    name = name.replace("-", "_")
    if name not in choices:
        raise ConfigError(
            f"{where}: {what} '{name}' is not one of {', '.join(choices)}"
            f"{suggest_suffix(name, list(choices))}"
        )
    return name, options


def make_sampler(spec: tuple[str, dict[str, Any]], seed: int) -> Any:
    from optuna import samplers

    name, options = spec
    kind = {"tpe": samplers.TPESampler, "random": samplers.RandomSampler}[name]
    return kind(seed=seed, **options)


def make_pruner(spec: tuple[str, dict[str, Any]]) -> Any:
    from optuna import pruners

    name, options = spec
    kinds = {
        "median": pruners.MedianPruner,
        "successive_halving": pruners.SuccessiveHalvingPruner,
        "threshold": pruners.ThresholdPruner,
        "none": pruners.NopPruner,
    }
    return kinds[name](**options)


def _checked(build: Callable[[], Any], what: str, where: str) -> None:
    """Builds a sampler or pruner once, so that a bad option is a line now, not in a trial."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notes
            build()
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {what}: {' '.join(str(error).split())}") from None


def _param(key: Any, spec: Any, where: str, defaults: dict[str, Any]) -> Param:
    where = f"{where}: params.{key}"
    if not isinstance(key, str) or key not in defaults:
        raise ConfigError(
            f"{where}: unknown config key '{key}'{suggest_suffix(str(key), list(defaults))}"
        )
    if key in TUNE_SETS:
        raise ConfigError(f"{where}: the tuner sets {TUNE_SETS[key]} itself")
    if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
        raise ConfigError(
            f"{where}: expected a mapping with type: {', '.join(DISTRIBUTIONS)}, got {shown(spec)}"
        )
    kind = spec["type"]
    _unknown(set(spec) - {"type"}, DISTRIBUTIONS[kind], f"{where} ({kind})")
    default = defaults[key]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list")
        texts = []
        for choice in choices:
            if choice is None or isinstance(choice, dict):
                raise ConfigError(
                    f"{where}: a choice must be a value of {key}, got {shown(choice)}"
                )
            texts.append(json.dumps(choice) if isinstance(choice, list) else _plain(choice))
        if len(set(map(str, texts))) < len(texts):
            raise ConfigError(f"{where}: choices repeat a value")
        param = Param(key, kind, choices=tuple(texts))
    else:
        number = int if kind == "int" else float
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            raise ConfigError(
                f"{where}: a {kind} distribution over a key of {shown(default)}; use categorical"
            )
        if number is float and isinstance(default, int):
            raise ConfigError(f"{where}: {key} is an integer key; use type: int")
        if number is int and isinstance(default, float):
            raise ConfigError(f"{where}: {key} is a float key; use type: float")
        for bound in ("low", "high"):
            if bound not in spec:
                raise ConfigError(f"{where}: a {kind} distribution needs low and high")
        low = _coerce(f"{where}.low", spec["low"], number)
        high = _coerce(f"{where}.high", spec["high"], number)
        log = _coerce(f"{where}.log", spec.get("log", False), bool)
        step = _coerce(f"{where}.step", spec["step"], number) if "step" in spec else None
        if not low < high:
            raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
        if log and low <= 0:
            raise ConfigError(f"{where}: a log distribution needs low > 0, got {low}")
        if step is not None and (step <= 0 or log):
            raise ConfigError(f"{where}: step must be > 0, and cannot go with log: true")
        param = Param(key, kind, low, high, log, step)
    try:
        param.distribution()
    except ValueError as error:
        raise ConfigError(f"{where}: {' '.join(str(error).split())}") from None
    return param


def _plain(value: Any) -> Any:
    """A YAML scalar as the plain value Optuna stores (mtrl's YAML numbers remember their text)."""
    if isinstance(value, bool):
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _count(value: Any, key: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an integer >= {minimum}, got {shown(value)}")
    return int(value)


def load_space(
    path: str | Path, n_trials: int | None = None, out: str | Path | None = None
) -> Space:
    """Reads and checks a search space; the config of every bound and every choice is built (a
    value the config refuses is a line now, not a failed trial). ``n_trials``, ``out``: the
    command line's, over the file's."""
    require("optuna", "mtrl tune")
    path = resolve(path)
    data = load_yaml(path)
    where = str(path)
    _unknown(set(data), SPACE_KEYS, where)
    name = str(data.get("name") or path.stem)
    preset = resolve(data["preset"], path.parent).resolve() if data.get("preset") else None
    overrides = _as_overrides(data.get("overrides"), where)
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in TUNE_SETS:
            raise ConfigError(f"{where}: override '{item}': the tuner sets {TUNE_SETS[key]} itself")
    try:
        base = build_run_config(preset, list(overrides))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    params_spec = data.get("params")
    if not isinstance(params_spec, dict) or not params_spec:
        raise ConfigError(
            f"{where}: params must be a non-empty mapping of config keys to distributions"
        )
    defaults = {key: default for key, (default, _) in field_docs().items()}
    params = tuple(_param(key, spec, where, defaults) for key, spec in params_spec.items())
    for param in params:
        for value in param.extremes():
            try:
                build_run_config(preset, [*overrides, param.override(value)])
            except ConfigError as error:
                raise ConfigError(f"{where}: params.{param.key} = {value}: {error}") from None
    objective = data.get("objective", "final_mean")
    if objective not in OBJECTIVES:
        raise ConfigError(
            f"{where}: objective '{objective}' is not one of {', '.join(OBJECTIVES)}"
            f"{suggest_suffix(str(objective), list(OBJECTIVES))}"
        )
    periodic = 0 < base.eval_every < base.total_steps
    if OBJECTIVES[objective][0] == "eval" and not periodic:
        raise ConfigError(
            f"{where}: objective {objective} scores the last periodic evaluation, and the trials "
            f"have none (eval_every={base.eval_every}, total_steps={base.total_steps})"
        )
    trials = _count(
        n_trials if n_trials is not None else data.get("n_trials", 10), "n_trials", where, 1
    )
    seed = _count(data.get("seed", 0), "seed", where, 0)
    sampler = _named(data.get("sampler", "tpe"), SAMPLERS, "sampler", where)
    pruner = _named(data.get("pruner", "median"), PRUNERS, "pruner", where)
    _checked(lambda: make_sampler(sampler, seed), f"sampler {sampler[0]}", where)
    _checked(lambda: make_pruner(pruner), f"pruner {pruner[0]}", where)
    if pruner[0] != "none" and not periodic:
        warn(f"{where}: the pruner never prunes: the trials have no periodic evaluation to report")
    root = Path(out) if out else Path(data.get("out") or Path("runs") / "tune" / name)
    return Space(
        name, preset, overrides, params, objective, trials, sampler, pruner, seed, root.resolve()
    )


# ------------------------------------------------------------------------------- the objective
def score(values: list[float], aggregate: str) -> float:
    """The tasks' values pooled into one number: their mean, or their IQM."""
    if aggregate == "iqm":
        return interquartile_mean([values])
    return float(sum(values) / len(values))


def objective_value(run_dir: Path, objective: str) -> float | None:
    """A finished run's score, from its last evaluation record of the objective's kind (the final
    one, or the last periodic one) in ``metrics.jsonl``; None where it has none."""
    kind, metric, aggregate = OBJECTIVES[objective]
    records = [record for record in read_metrics(run_dir) if record.get("kind") == kind]
    if not records:
        return None
    suffix = f"/{metric}"
    values = [v for k, v in records[-1].items() if k.startswith("tasks/") and k.endswith(suffix)]
    return score(values, aggregate) if values else None


class PruneTrial(Callback):
    """Reports each periodic evaluation to the trial and stops the run where the pruner says:
    the run ends cleanly (checkpoint, ``run.json``) and ``trial.json`` says it was pruned. A
    resumed trial does not report again a step it reported before its interruption."""

    def __init__(self, trial: Any, objective: str, run_dir: Path, reported: set[int]) -> None:
        super().__init__()
        self.trial, self.objective, self.run_dir = trial, objective, run_dir
        self.reported = reported

    def on_eval(self, step: int, results: dict[str, Any], final: bool) -> bool | None:
        if final:
            return None
        _, metric, aggregate = OBJECTIVES[self.objective]
        field = RESULT_FIELDS[metric]
        value = score([getattr(result, field) for result in results.values()], aggregate)
        if step not in self.reported:
            self.trial.report(value, step)
            self.reported.add(step)
        if not self.trial.should_prune():
            return None
        record = {"trial": self.trial.number, "state": "pruned", "step": step, "value": value}
        temporary = self.run_dir / f".{TRIAL_FILE}.tmp"
        temporary.write_text(json.dumps(record, indent=2))
        temporary.replace(self.run_dir / TRIAL_FILE)
        return False


def pruned_at(run_dir: Path) -> dict[str, Any] | None:
    """A pruned trial's record in its run directory, or None."""
    try:
        record = json.loads((run_dir / TRIAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("state") == "pruned" else None


# -------------------------------------------------------------------------------- the storage
def open_storage(url: str) -> Any:
    """Optuna's RDB storage at ``url``; SQLite waits for its lock (trials write to it side by
    side). A URL that cannot be opened is one line, without its password."""
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as error:  # sqlalchemy's URL, driver and connection errors alike
        try:
            from sqlalchemy.engine import make_url

            shown_url = make_url(url).render_as_string(hide_password=True)
        except Exception:
            shown_url = url
        message = " ".join(str(error).split())[:300]
        raise ConfigError(
            f"storage {shown_url}: cannot open it ({type(error).__name__}: {message})"
        ) from None


def open_study(space: Space, storage: Any) -> Any:
    """The space's study, made or loaded (``load_if_exists``), maximising the objective. A study
    made from another space (base config, distributions, objective) is refused. The sampler's
    seed is the space's plus the trials already asked, so that a resumed study does not draw
    again the values its first command drew."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=space.name,
        direction="maximize",
        load_if_exists=True,
        pruner=make_pruner(space.pruner),
    )
    study.sampler = make_sampler(space.sampler, space.seed + len(study.get_trials(deepcopy=False)))
    fingerprint = space.fingerprint()
    made_from = study.user_attrs.get("mtrl_space")
    if made_from is None:
        study.set_user_attr("mtrl_space", fingerprint)
    elif made_from != fingerprint:
        old, new = json.loads(made_from), json.loads(fingerprint)
        changed = ", ".join(key for key in new if old.get(key) != new[key])
        raise ConfigError(
            f"study {space.name} was made from another search space ({changed} differ); give the "
            "space another name, or another --out or --storage"
        )
    return study


# --------------------------------------------------------------------------- a trial's process
def trial_main() -> int:
    """The process of one trial (``python -m mtrl.experiments.tune``, its request as JSON on
    stdin): the run, started or resumed from its checkpoint, with ``PruneTrial``. Exit 0 when
    the run ended (finished, pruned or stopped by a signal: its run directory says which),
    ``ELSEWHERE_EXIT`` where another process writes the run directory, else the error's code."""
    request = json.loads(sys.stdin.read())
    sys.argv[1:] = [f"--study={request['study']}", f"--trial={request['trial']}"]  # provenance
    try:
        import optuna
        from optuna.trial import Trial

        from mtrl.api import train

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(request["storage"])
        pruner = make_pruner(tuple(request["pruner"]))
        study = optuna.load_study(study_name=request["study"], storage=storage, pruner=pruner)
        study_id = storage.get_study_id_from_name(request["study"])
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, request["trial"])
        reported = set(storage.get_trial(trial_id).intermediate_values)
        run_dir = Path(request["run_dir"])
        prune = PruneTrial(Trial(study, trial_id), request["objective"], run_dir, reported)
        if has_checkpoint(run_dir):
            train(resume=run_dir, callbacks=prune)
        else:
            train(
                request["preset"], overrides=request["overrides"], run_dir=run_dir, callbacks=prune
            )
    except RunFinishedError:
        return 0
    except RunLockedError as error:
        print(f"mtrl: {error}", file=sys.stderr)
        return ELSEWHERE_EXIT
    except UserError as error:
        print(f"mtrl: error: {' '.join(str(error).split())}", file=sys.stderr)
        return error.exit_code or 1
    except KeyboardInterrupt:  # before training began; the run's own stop is clean
        print("mtrl: interrupted", file=sys.stderr)
        return 130
    return 0


# ------------------------------------------------------------------------------ a study's loop
@dataclass
class _Launch:
    number: int
    params: dict[str, Any]
    run_dir: Path
    resumed: bool


class StudyRunner:
    """Runs one study to its ``n_trials``, ``jobs`` trial processes at a time; the trials are
    asked and told here, each trial's process reports its evaluations itself."""

    def __init__(
        self, space: Space, storage_url: str, jobs: int, say: Callable[[str], None]
    ) -> None:
        self.space, self.storage_url, self.jobs, self.say = space, storage_url, jobs, say
        self.storage = open_storage(storage_url)
        self.study = open_study(space, self.storage)
        self.failed_now = 0
        self._lock = threading.Lock()
        self._live: list[subprocess.Popen] = []

    def run_dir(self, number: int) -> Path:
        return self.space.out / f"trial_{number:04d}"

    def run(self) -> dict[str, Any]:
        from optuna.trial import TrialState

        self.space.out.mkdir(parents=True, exist_ok=True)
        trials = self.study.get_trials(deepcopy=False)
        ours = {str(self.run_dir(t.number)) for t in trials} | {
            t.user_attrs.get("run_dir") for t in trials
        }
        strays = sorted(str(p) for p in self.space.out.glob("trial_*") if p.is_dir())
        if stray := next((path for path in strays if path not in ours), None):
            raise RunError(
                f"{stray} holds a run that is no trial of the study {self.space.name} in this "
                "storage (its study.db deleted? another --storage?); give another --out"
            )
        pending: deque[_Launch] = deque()
        busy = 0
        for trial in trials:
            if trial.state != TrialState.RUNNING:
                continue
            run_dir = Path(trial.user_attrs.get("run_dir", self.run_dir(trial.number)))
            status = self._settle(trial.number, run_dir, None, "")
            if status in ("complete", "pruned", "failed"):
                continue
            busy += 1
            if status == "resume":
                pending.append(_Launch(trial.number, dict(trial.params), run_dir, True))
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self._trials())
        to_ask = max(0, self.space.n_trials - done - busy)
        self.say(
            f"study {self.space.name}: {done} of {counted(self.space.n_trials, 'trial')} done, "
            f"{len(pending)} to resume, {busy - len(pending)} running elsewhere, {to_ask} to start"
        )
        self._loop(pending, to_ask)
        return self.summary()

    def _trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def _loop(self, pending: deque[_Launch], to_ask: int) -> None:
        distributions = self.space.distributions()
        running: dict[Future, _Launch] = {}
        with ThreadPoolExecutor(self.jobs) as pool:
            try:
                while pending or to_ask or running:
                    while len(running) < self.jobs and (pending or to_ask):
                        if pending:
                            launch = pending.popleft()
                        else:
                            trial = self.study.ask(distributions)
                            run_dir = self.run_dir(trial.number)
                            trial.set_user_attr("run_dir", str(run_dir))
                            launch = _Launch(trial.number, dict(trial.params), run_dir, False)
                            to_ask -= 1
                        running[pool.submit(self._execute, launch)] = launch
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        launch = running.pop(future)
                        returncode, error = future.result()
                        self._report(
                            launch,
                            self._settle(launch.number, launch.run_dir, returncode, error),
                            error,
                        )
            except KeyboardInterrupt:
                self._interrupt(running)
                raise

    def _interrupt(self, running: dict[Future, _Launch]) -> None:
        """Ctrl-C: every trial process stops cleanly at its next step (a checkpoint); their
        trials stay running in the study, for the next command to resume."""
        with self._lock:
            for process in self._live:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
        for future, launch in running.items():
            returncode, _ = future.result()
            if pruned_at(launch.run_dir) or run_state(launch.run_dir) == "finished":
                self._settle(launch.number, launch.run_dir, returncode, "")
        self.say(f"interrupted: rerun the same command to resume the study {self.space.name}")

    def _execute(self, launch: _Launch) -> tuple[int, str]:
        """One trial's process; its output goes to ``<run_dir>.log``. Never raises."""
        request = {
            "storage": self.storage_url,
            "study": self.space.name,
            "trial": launch.number,
            "run_dir": str(launch.run_dir),
            "preset": str(self.space.preset) if self.space.preset else None,
            "overrides": [*TRIAL_DEFAULTS, *self.space.trial_overrides(launch.params)],
            "pruner": list(self.space.pruner),
            "objective": self.space.objective,
        }
        launch.run_dir.parent.mkdir(parents=True, exist_ok=True)
        log_path = launch.run_dir.parent / f"{launch.run_dir.name}.log"
        verb = "resume" if launch.resumed else "start"
        with log_path.open("a") as log:
            log.write(f"\n$ mtrl tune: {verb} trial {launch.number} of study {self.space.name}\n")
            log.flush()
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "mtrl.experiments.tune"],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError as error:
                return -1, str(error)
            with self._lock:
                self._live.append(process)
            _, error_text = process.communicate(json.dumps(request))
            with self._lock:
                self._live.remove(process)
            log.write(error_text)
        lines = [line for line in error_text.strip().splitlines() if line.strip()]
        return process.returncode, lines[-1] if lines else f"exit code {process.returncode}"

    def _settle(self, number: int, run_dir: Path, returncode: int | None, error: str) -> str:
        """Tells the study what a trial's run directory says it came to: "complete", "pruned" or
        "failed"; else "resume" (stopped or never started: no process holds it), or "running
        elsewhere" / "interrupted" (left running in the study)."""
        from optuna.trial import TrialState

        from mtrl.training.lock import holder

        if pruned_at(run_dir) is not None:
            self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            return "pruned"
        if run_state(run_dir) == "finished":
            value = objective_value(run_dir, self.space.objective)
            if value is not None:
                self.study.tell(number, value, skip_if_finished=True)
                return "complete"
            error = (
                f"no {OBJECTIVES[self.space.objective][0]} record in {run_dir / 'metrics.jsonl'}"
            )
        elif returncode == ELSEWHERE_EXIT:
            return "running elsewhere"
        elif returncode is None:  # a trial a command before this one left running
            return "running elsewhere" if holder(run_dir) is not None else "resume"
        elif returncode == 0 and read_run_info(run_dir).get("status") == "interrupted":
            return "interrupted"
        study_id = self.storage.get_study_id_from_name(self.space.name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, number)
        self.storage.set_trial_user_attr(trial_id, "error", error)
        self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        self.failed_now += 1
        return "failed"

    def _report(self, launch: _Launch, status: str, error: str) -> None:
        params = " ".join(f"{key}={value}" for key, value in launch.params.items())
        if launch.resumed:
            params += ", resumed"
        note = ""
        if status == "complete":
            trial = self.study.get_trials(deepcopy=False)[launch.number]
            note = f": {self.space.objective} = {trial.value:.4g}"
        elif status == "failed":
            note = f" ({error}; log: {launch.run_dir}.log)"
        elif status == "running elsewhere":
            note = f" ({error})"
        elif status == "interrupted":
            note = " (stopped by a signal; rerun to resume it)"
        self.say(f"  {status:<9} trial {launch.number} ({params}){note}")

    def summary(self) -> dict[str, Any]:
        """Counts by state, the best complete trial and its preset (``best.yaml``), and the
        trials' table (``trials.md``), both in the study's directory."""
        from optuna.trial import TrialState

        trials = self._trials()
        states = {state: [t for t in trials if t.state == state] for state in TrialState}
        complete = states[TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.value) if complete else None
        preset = None
        if best is not None:
            preset = self.space.out / "best.yaml"
            write_best_preset(self.space, best, len(complete), preset)
        table = self.space.out / "trials.md"
        with writing(table):
            table.write_text(trials_table(self.space, trials) + "\n")
        return {
            "study": self.space.name,
            "complete": len(complete),
            "pruned": len(states[TrialState.PRUNED]),
            "failed": len(states[TrialState.FAIL]),
            "running": len(states[TrialState.RUNNING]),
            "failed_now": self.failed_now,
            "best_trial": None if best is None else best.number,
            "best_value": None if best is None else best.value,
            "best_preset": preset,
        }


def trials_table(space: Space, trials: list[Any]) -> str:
    keys = [param.key for param in space.params]
    lines = [
        f"| trial | state | {space.objective} | {' | '.join(keys)} |",
        "|---" * (3 + len(keys)) + "|",
    ]
    for trial in trials:
        value = "" if trial.value is None else f"{trial.value:.4g}"
        params = " | ".join(str(trial.params.get(key, "")) for key in keys)
        lines.append(f"| {trial.number} | {trial.state.name.lower()} | {value} | {params} |")
    return "\n".join(lines)


def _differences(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    found = {}
    for key, value in values.items():
        if isinstance(value, dict):
            if inner := _differences(value, defaults[key]):
                found[key] = inner
        elif value != defaults[key]:
            found[key] = value
    return found


def write_best_preset(space: Space, trial: Any, complete: int, path: Path) -> None:
    """The best trial's config as a preset: the keys that differ from the defaults (its preset's,
    the space's overrides and the tuned values), which ``mtrl train --config`` takes."""
    import yaml

    keys = _differences(to_dict(space.config(trial.params)), to_dict(Config()))
    header = (
        f"# The best trial of the study {space.name} (mtrl tune): trial {trial.number}, "
        f"{space.objective} = {trial.value:.4g} over {counted(complete, 'complete trial')}.\n"
        f"# Train it with: mtrl train --config {path}\n"
    )
    with writing(path):
        path.write_text(header + yaml.safe_dump(keys, sort_keys=False))


# --------------------------------------------------------------------------------- the command
def methods_table(space: Space, rows: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"| method | best {space.objective} | best trial | complete | pruned | failed | best preset |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        best = "n/a" if row["best_value"] is None else f"{row['best_value']:.4g}"
        trial = "" if row["best_trial"] is None else str(row["best_trial"])
        preset = row["best_preset"] or ""
        lines.append(
            f"| {method} | {best} | {trial} | {row['complete']} | {row['pruned']} | "
            f"{row['failed']} | {preset} |"
        )
    return "\n".join(lines)


def tune(
    space: Space,
    storage: str | None = None,
    jobs: int = 1,
    methods: list[str] | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Runs the space's study, or with ``methods`` one study per method, each with the same
    trials, steps and space (``Space.for_method``), one after another; returns each study's
    summary (``StudyRunner.summary``), with ``method`` set in that mode."""
    if jobs <= 0:
        raise UsageError(f"--jobs must be > 0, got {jobs}")
    studies = [(None, space)]
    if methods:
        if len(set(methods)) < len(methods):
            raise UsageError(f"--methods repeats a method: {' '.join(methods)}")
        dropped = [param.key for param in space.params if param.key in METHOD_KEYS]
        if dropped:
            say(
                f"--methods sets {', '.join(METHOD_KEYS)}: the space's {', '.join(dropped)} dropped"
            )
        studies = [(method, space.for_method(method)) for method in methods]
        for method, each in studies:  # every method's config, before any trial starts
            try:
                build_run_config(each.preset, list(each.overrides))
            except ConfigError as error:
                raise ConfigError(f"--methods {method}: {error}") from None
    space.out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{space.out / 'study.db'}"
    summaries = []
    for method, each in studies:
        summary = StudyRunner(each, url, jobs, say).run()
        summary["method"] = method
        summaries.append(summary)
        best = summary["best_value"]
        say(
            f"study {each.name}: {summary['complete']} complete, {summary['pruned']} pruned, "
            f"{summary['failed']} failed; best {space.objective}: "
            + (
                "n/a (no complete trial)"
                if best is None
                else f"{best:.4g} (trial {summary['best_trial']}, {summary['best_preset']})"
            )
        )
    if methods:
        table = methods_table(space, {s["method"]: s for s in summaries})
        path = space.out / "methods.md"
        with writing(path):
            path.write_text(table + "\n")
        say(table)
        say(f"wrote {path}")
    return summaries


def command(args: Any) -> int:
    """``mtrl tune SPACE``: exit 1 where a trial of this command failed (rerun to replace it)."""
    space = load_space(args.space, n_trials=args.n_trials, out=args.out)
    summaries = tune(space, storage=args.storage, jobs=args.jobs, methods=args.methods)
    failed = sum(summary["failed_now"] for summary in summaries)
    if failed:
        print(
            f"mtrl: {counted(failed, 'trial')} failed (logs beside their run directories); "
            "rerun the command to try new ones in their place"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(trial_main())
