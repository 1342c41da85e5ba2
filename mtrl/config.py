"""Typed, frozen run configuration: defaults here, YAML presets that set only what differs, and
``key=value`` overrides typed after the command.

Frozen dataclasses (as the Meta-World+ baselines use) make a run's configuration one value that can be
saved, compared and restored; every field's comment is its documentation. Errors are ``ConfigError``:
one line, naming the key and the valid choices, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtrl import limits
from mtrl.errors import ConfigError
from mtrl.presets import resolve
from mtrl.specs import shown, suggest_suffix
from mtrl.user_yaml import parse, parse_scalar


@dataclass(frozen=True)
class EnvConfig:
    # Task set: "MT10", "MT50", "MT1:reach-v3", "reach-v3,push-v3", "synthetic" or "synthetic:<T>";
    # "synthetic-scaled:<T>" multiplies task i's reward by 10^i (a test bed for reward_norm).
    name: str = "MT10"
    # Meta-World reward function: "v2" (default of Meta-World v3) or "v1" (what older papers used).
    reward_version: str = "v2"
    # Episode length; 0 means the suite's own (500 for Meta-World, 50 for synthetic).
    max_episode_steps: int = 0
    # "sync" (one process), "sharded" (the tasks split over `workers` processes, each stepping a
    # sync sub-vector; the trainer's process steps the first shard) or "async" (gymnasium's, one
    # process per task; slower on few cores and ~12 GB for MT50).
    vector: str = "sync"
    # Processes for vector=sharded; 0: one per CPU core.
    workers: int = 0


@dataclass(frozen=True)
class AgentConfig:
    # "mt_sac": one multi-task SAC (everything below); "independent": one stable-baselines3 SAC per
    # task (mtrl.baselines.independent), the upper-bound baseline of the MTRL papers.
    algorithm: str = "mt_sac"
    # Actor body: a key of mtrl.agents.networks.NETWORKS with options, e.g. "shared" (one MLP on
    # state + one-hot), "multihead", "mmoe:experts=4", "cgc", "ple", "soft_modular:modules=4",
    # "task_routed:route=ssoo"; every body takes "width=N" (all hidden layers N wide).
    actor: str = "shared"
    # Critic body, as for the actor (each of the twin critics is one such body).
    critic: str = "shared"
    # Hidden layer widths of actor and critic (the mtrl/CARE MT-SAC setup: 3 x 400).
    hidden_sizes: tuple[int, ...] = (400, 400, 400)
    # Adam learning rates of the actor and the critic.
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Learning rate of the per-task log temperatures.
    alpha_lr: float = 3e-4
    # Adam's epsilon for actor, critic and temperatures (torch's default 1e-8; McLean et al. 2025
    # use 1e-5).
    adam_eps: float = 1e-8
    # Decoupled weight decay of actor and critic (AdamW; BRC uses optax.adamw's 1e-4); 0: Adam.
    weight_decay: float = 0.0
    # Weight initialisation: "torch" (nn.Linear's default) or "he_uniform" (McLean et al. 2025,
    # rainx0r/mtrl: He-uniform hidden weights, zero biases, output layers uniform in +-1e-3 for the
    # actor and +-3e-3 for the critic); "he_uniform" is defined for the shared and multihead bodies.
    init: str = "torch"
    # Initial temperature of every task.
    init_temperature: float = 1.0
    # Per-task entropy target; 0 means the usual -|A|.
    target_entropy: float = 0.0
    # Discount factor.
    gamma: float = 0.99
    # Polyak averaging rate of the target critics.
    tau: float = 5e-3
    # Transitions sampled per task per update (the batch is [T, B]).
    batch_size_per_task: int = 128
    # Gradient method for the critic's shared parameters: a key of mtrl.gradients.GRADIENT_METHODS,
    # optionally with options ("pcgrad", "pcgrad_dir:scope=combined", "cagrad:c=0.5").
    critic_grad: str = "mean"
    # Gradient method for the actor's shared parameters.
    actor_grad: str = "mean"
    # Bounds of the actor's log standard deviation.
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    # How they bound it: "tanh" maps the head's output smoothly into them (CleanRL; a
    # fresh head starts at their midpoint), "clip" clips it (SB3, SpinningUp, McLean et al.; a fresh
    # head starts at log std 0). With [-20, 2] that is std 1e-4 against 1 at the start.
    log_std_bound: str = "tanh"
    # Clip each combined gradient to this global norm; 0 disables clipping.
    grad_clip_norm: float = 0.0
    # Every N updates, compute per-task gradients (one vmap pass) to log the gradient-conflict
    # diagnostics (cosines, conflicting pairs, magnitude similarity), also for ``mean``; 0: never.
    diagnostics_every: int = 1000
    # At those updates the plasticity diagnostics (mtrl.agents.plasticity) count a hidden unit as
    # dormant when its mean |activation| over the batch is at most this share of its layer's mean
    # (Sokar et al. 2023's tau; 0.1 is McLean et al. 2025's code's). In [0, 1).
    dormant_threshold: float = 0.1
    # Compile the update's passes with torch.compile on their first use: the TD targets, the
    # per-task pass (vmap over tasks) and, for methods whose loss weights are constant (``mean``),
    # the gradient of the mean loss. Seconds of compiling once, then faster updates
    # (docs/benchmarks.md has the measured gain). Falls back to eager with a warning where
    # compiling fails; TORCH_COMPILE_DISABLE=1 turns it off for the whole process.
    compile: bool = True
    # Arithmetic of the networks' forward and backward passes: "fp32", or "bf16" (autocast: the
    # matmuls in bfloat16, faster on CPUs with avx512_bf16/AMX and on recent GPUs; weights,
    # optimiser state, losses, TD targets, temperatures, Gram matrices and gradient methods stay
    # fp32), or "auto" (bf16 where the device runs it fast, else fp32). A resume may change it.
    precision: str = "fp32"
    # The critic's loss: "mse" (regression on the soft TD target), "hl_gauss" (Farebrother et al.
    # 2024: cross-entropy with a Gaussian histogram of the target, sigma = 0.75 bin) or
    # "categorical" (C51's projected target distribution, as BRC uses it).
    critic_loss: str = "mse"
    # Logits per critic of the distributional losses (hl_gauss, categorical); Q is the expectation
    # of their distribution. Unused by mse.
    bins: int = 101
    # The support of those logits, [v_min, v_max]: targets outside it count at its ends, so it
    # must hold the returns (with reward_norm=returns they are scaled into it). Unused by mse.
    v_min: float = -10.0
    v_max: float = 10.0
    # How a body sees its task: "onehot" (the observation's one-hot) or "embedding" (BRC: a
    # learned, unit-norm vector of `task_embedding_dim` per task beside the one-hot, a
    # task-specific parameter that gradient methods never combine).
    task_encoding: str = "onehot"
    task_embedding_dim: int = 32
    # Per-task reward normalisation for the TD targets (the logged returns stay the env's own):
    # "none"; "returns" (BRC: divide by the running extent of discounted returns, so values span
    # ~v_max); "scale" (ARS: a history-based factor per task, refreshed at each reset).
    reward_norm: str = "none"
    # Every N updates re-initialise actor, critic, targets and their optimisers, keeping replay,
    # temperatures and gradient-method state (Nikishin et al. 2022; ARS for MTRL); 0: never.
    reset_every: int = 0
    # Updates on the kept replay right after a reset, before acting resumes, so that the fresh
    # networks do not act at random.
    reset_warmup: int = 0


@dataclass(frozen=True)
class WandbConfig:
    # Weights & Biases project for the run's scalars, config and final table; empty: no W&B (it
    # needs the wandb extra: pip install "mtrl-suite[wandb]"). A resume continues the same W&B run.
    project: str = ""
    # W&B entity (a team or user); empty: your default one.
    entity: str = ""
    # W&B group; empty: none, and mtrl sweep sets it to the sweep's name.
    group: str = ""
    # "online", "offline" (upload later with `wandb sync`) or "disabled"; empty: W&B's own
    # choice (the WANDB_MODE variable, else online).
    mode: str = ""


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    # The method's name in `mtrl report` tables and plots (e.g. "SAC+PCGrad"); empty: derived.
    label: str = ""
    # Seeds the networks, the replay sampling, the envs' start states and the training goals.
    seed: int = 0
    # Vector-env steps: each steps every task once, so a run collects total_steps x T transitions.
    total_steps: int = 1_000_000
    # Steps of uniformly random actions before the policy acts and updates begin.
    warmup_steps: int = 1_500
    # Gradient updates per vector-env step (the update-to-data ratio per task).
    updates_per_step: float = 1.0
    # Replay capacity per task (transitions); MT50 x 100k is ~3.7 GB of float32.
    replay_capacity_per_task: int = 100_000
    # Evaluate every N steps (0: only at the end), with this many deterministic episodes per task.
    eval_every: int = 50_000
    eval_episodes: int = 5
    # Episodes per task of the final evaluation (Meta-World v3's protocol uses 50).
    final_eval_episodes: int = 50
    # Record each task's first episode at the evaluations at multiples of N steps, and at the
    # final one (0: never), as GIFs in eval/videos/ and in TensorBoard's images (needs imageio).
    eval_video_every: int = 0
    # Write a checkpoint every N steps (0: only at the end); keep the last K plus the best.
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 3
    # Also checkpoint the replay buffer, so a resume is exact (large: capacity x T transitions).
    checkpoint_replay: bool = False
    # Scalars are logged every N steps.
    log_every: int = 1_000
    # Where the run directory goes; empty means runs/<env>-<seed>-<time>.
    run_dir: str = ""
    # "auto" (CUDA when present), "cpu" or "cuda".
    device: str = "auto"
    # torch intra-op threads. 0: mtrl chooses, re-checking every few seconds: one per core, less
    # the cores other busy processes take, and an equal share with other mtrl runs (niced ones
    # yield). N: exactly N, whatever else runs (a warning where that oversubscribes the cores).
    torch_threads: int = 0
    # Deterministic torch kernels (for exact resume checks; slower on GPU).
    deterministic: bool = False
    # Show a console progress bar.
    progress: bool = True
    # Updates with non-finite losses or gradients are skipped (and counted); this many in a row
    # stop the run, leaving its last checkpoint intact.
    max_nonfinite_updates: int = 100


# Values a field may take, where it is a closed set; registries are checked where they live.
CHOICES: dict[str, tuple[str, ...]] = {
    "env.reward_version": ("v1", "v2"),
    "env.vector": ("sync", "async", "sharded"),
    "device": ("auto", "cpu", "cuda"),
    "agent.algorithm": ("mt_sac", "independent"),
    "agent.init": ("torch", "he_uniform"),
    "agent.critic_loss": ("mse", "hl_gauss", "categorical"),
    "agent.task_encoding": ("onehot", "embedding"),
    "agent.reward_norm": ("none", "returns", "scale"),
    "agent.precision": ("fp32", "bf16", "auto"),
    "agent.log_std_bound": ("tanh", "clip"),
    "wandb.mode": ("", "online", "offline", "disabled"),
}

# Fields that must be > 0 (the rest of the numeric fields must be >= 0). A float must also be
# finite and, unless 0, normal: a training process flushes subnormal floats to zero
# (``run.configure_torch``), so tau=1e-320 would run, and be saved, as 0.
POSITIVE = {
    "total_steps",
    "replay_capacity_per_task",
    "eval_episodes",
    "final_eval_episodes",
    "keep_checkpoints",
    "log_every",
    "agent.actor_lr",
    "agent.critic_lr",
    "agent.alpha_lr",
    "agent.adam_eps",
    "agent.init_temperature",
    "agent.batch_size_per_task",
    "agent.tau",
    "agent.gamma",
    "agent.task_embedding_dim",
    "updates_per_step",
    "max_nonfinite_updates",
}


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Turns a YAML or command-line value into the field's type, or says in one line why not."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                number = float("nan")
            if number == number and number.is_integer() and abs(number) < 2**62:
                return int(number)
        raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value.replace("_", "") if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {shown(value)}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {shown(value)}")
        return float(number)
    if annotation is str:  # a number written in YAML gives back its text (mtrl.user_yaml)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {shown(value)}")
    if origin is tuple:
        (item_type, _) = typing.get_args(annotation)
        if isinstance(value, str):
            value = [v for v in value.strip("[]() ").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown(value)}")
        return tuple(_coerce(key, v.strip() if isinstance(v, str) else v, item_type) for v in value)
    raise ConfigError(f"{key}: unsupported field type {annotation}")


def parse_int(key: str, text: str) -> int:
    """A command-line integer read as config keys read theirs (``1e6``, ``1_000``), or a
    one-line ConfigError naming ``key``."""
    return _coerce(key, parse_scalar(text), int)


def _leaf_paths(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for name, annotation in _field_types(cls).items():
        if dataclasses.is_dataclass(annotation):
            paths.extend(_leaf_paths(annotation, f"{prefix}{name}."))
        else:
            paths.append(f"{prefix}{name}")
    return paths


def _apply(cls: type, current: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    """Returns a copy of the dataclass ``current`` with nested ``updates`` applied and typed."""
    types_ = _field_types(cls)
    changes = {}
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if not isinstance(name, str) or name not in types_:
            valid = [f"{prefix}{n}" for n in types_]
            raise ConfigError(f"unknown config key '{key}'{suggest_suffix(key, valid)}")
        annotation = types_[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of its fields, got {shown(value)}")
            changes[name] = _apply(annotation, getattr(current, name), value, f"{key}.")
        else:
            changes[name] = _coerce(key, value, annotation)
    return dataclasses.replace(current, **changes)


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key '{key}' conflicts with '{part}'")
            node = child
        node[parts[-1]] = value
    return nested


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["seed=3", "agent.critic=multihead"]`` -> nested dict; values are parsed as YAML scalars."""
    dotted: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        value = parse_scalar(raw) if raw.strip() else ""
        dotted[key] = raw if value is None else value
    return _nest(dotted)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset's keys; ``base:`` (a file relative to this one, else a shipped preset's name, as
    ``--config`` takes it) is loaded first and the file's own keys override it, so a variant
    preset holds only what makes it a variant."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = parse(path.read_text(), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a preset's name or a path, got {shown(base)}")
    base_path = resolve(base, relative_to=path.parent).resolve()
    if base_path in _chain or base_path == path.resolve():
        raise ConfigError(f"{path}: base presets form a loop through {base_path.name}")
    return _merge(load_yaml(base_path, (*_chain, path.resolve())), data)


def validate(config: Config) -> Config:
    """Value checks that types alone cannot express. The names of registered things (env,
    networks, gradient methods) are checked by their registries (``mtrl.training.run.check_specs``)."""
    flat = to_dict(config)
    for key, choices in CHOICES.items():
        value = _get(flat, key)
        if value not in choices:
            raise ConfigError(f"{key}: '{value}' is not one of {', '.join(choices)}")
    for key in _leaf_paths(Config):
        value = _get(flat, key)
        if isinstance(value, float) and not math.isfinite(value):  # a Config built in Python
            raise ConfigError(f"{key}: expected a finite number, got {value}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key in POSITIVE and value <= 0:
                raise ConfigError(f"{key}: must be > 0, got {value}")
            if key not in POSITIVE and value < 0 and key not in _SIGNED:
                raise ConfigError(f"{key}: must be >= 0, got {value}")
            if isinstance(value, float) and 0 < abs(value) < sys.float_info.min:
                raise ConfigError(
                    f"{key}: {value} is subnormal (training flushes it to 0); use 0 or a "
                    f"number of magnitude >= {sys.float_info.min:.4g}"
                )
    for key, bound in _BOUNDED.items():
        limits.at_most(key, _get(flat, key), bound)
    agent = config.agent
    if not agent.hidden_sizes or any(width <= 0 for width in agent.hidden_sizes):
        raise ConfigError("agent.hidden_sizes: need one or more positive widths")
    limits.at_most("agent.hidden_sizes", max(agent.hidden_sizes), limits.MAX_WIDTH)
    limits.at_most("agent.hidden_sizes (layers)", len(agent.hidden_sizes), limits.MAX_DEPTH)
    if not 0 < agent.gamma < 1:
        raise ConfigError(f"agent.gamma: must be in (0, 1), got {agent.gamma}")
    if not agent.tau <= 1:
        raise ConfigError(f"agent.tau: must be in (0, 1], got {agent.tau}")
    if agent.log_std_min >= agent.log_std_max:
        raise ConfigError("agent.log_std_min must be below agent.log_std_max")
    if not agent.dormant_threshold < 1:
        raise ConfigError(
            f"agent.dormant_threshold: must be in [0, 1), got {agent.dormant_threshold}"
        )
    if agent.bins < 2:
        raise ConfigError(f"agent.bins: a distributional critic needs >= 2, got {agent.bins}")
    if agent.reset_every and agent.reset_warmup >= agent.reset_every:
        raise ConfigError(
            f"agent.reset_warmup ({agent.reset_warmup}) must be below agent.reset_every "
            f"({agent.reset_every}), or the warm-up would reset again"
        )
    if agent.reward_norm == "returns" and agent.v_max <= 0:
        raise ConfigError(f"agent.reward_norm=returns scales values to v_max; got {agent.v_max}")
    if agent.algorithm == "independent" and config.eval_video_every:
        raise ConfigError("eval_video_every: the independent baseline records no videos; set 0")
    _check_support(agent)
    return config


def _check_support(agent: AgentConfig) -> None:
    """v_min < v_max, both within +-MAX_VALUE, with bins far enough apart for float32."""
    for key, value in (("agent.v_min", agent.v_min), ("agent.v_max", agent.v_max)):
        limits.at_most(f"{key} (its magnitude)", abs(value), limits.MAX_VALUE)
    if agent.v_min >= agent.v_max:
        raise ConfigError(f"agent.v_min ({agent.v_min}) must be below agent.v_max ({agent.v_max})")
    spacing = (agent.v_max - agent.v_min) / (agent.bins - 1)
    largest = max(abs(agent.v_min), abs(agent.v_max))
    if spacing < largest * limits.MIN_RELATIVE_SPACING:
        raise ConfigError(
            f"agent.v_min..agent.v_max ({agent.v_min}..{agent.v_max}) over {agent.bins} bins "
            f"puts them {spacing:.3g} apart, too close for float32 at that magnitude"
        )


# Sizes with a ceiling (mtrl.limits), checked before anything is built.
_BOUNDED = {
    "seed": limits.MAX_SEED,
    "replay_capacity_per_task": limits.MAX_REPLAY_PER_TASK,
    "eval_episodes": limits.MAX_EPISODES,
    "final_eval_episodes": limits.MAX_EPISODES,
    "agent.bins": limits.MAX_BINS,
    "agent.batch_size_per_task": limits.MAX_BATCH_PER_TASK,
    "agent.task_embedding_dim": limits.MAX_WIDTH,
}


# Numeric fields that may be negative.
_SIGNED = {
    "agent.target_entropy",
    "agent.log_std_min",
    "agent.log_std_max",
    "agent.v_min",
}


def _get(flat: dict[str, Any], dotted: str) -> Any:
    node: Any = flat
    for part in dotted.split("."):
        node = node[part]
    return node


def to_dict(config: Config) -> dict[str, Any]:
    """Plain data (tuples as lists) for YAML, JSON and checkpoints."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def from_dict(data: dict[str, Any]) -> Config:
    return _apply(Config, Config(), data)


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    return _apply(Config, config, parse_overrides(overrides))


def build_config(
    preset: str | Path | None = None, overrides: list[str] | None = None, check: bool = True
) -> Config:
    """Defaults <- YAML preset (a file, or a shipped preset's name: ``mtrl.presets``) <-
    ``key=value`` overrides, then validated."""
    config = Config()
    if preset is not None:
        config = _apply(Config, config, load_yaml(resolve(preset)))
    if overrides:
        config = apply_overrides(config, overrides)
    return validate(config) if check else config


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_config(path: str | Path) -> Config:
    return validate(from_dict(load_yaml(path)))


def field_docs() -> dict[str, tuple[Any, str]]:
    """Every config key (dotted) -> (its default, its documentation): the comment lines above the
    field in this file, which are where a field is documented (``mtrl train --help``, the docs'
    config reference)."""
    import inspect

    docs: dict[str, tuple[Any, str]] = {}

    def walk(cls: type, default: Any, prefix: str) -> None:
        # A comment documents the fields right below it, up to the next comment or blank line.
        comments: dict[str, str] = {}
        pending: list[str] = []
        group = ""
        for line in inspect.getsource(cls).splitlines()[1:]:
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(stripped.lstrip("#").strip())
            elif ":" in stripped and stripped.split(":")[0].isidentifier():
                group = " ".join(pending) if pending else group
                comments[stripped.split(":")[0]] = group
                pending = []
            else:
                pending, group = [], ""
        for name, annotation in _field_types(cls).items():
            value = getattr(default, name)
            if dataclasses.is_dataclass(annotation):
                walk(annotation, value, f"{prefix}{name}.")
            else:
                docs[f"{prefix}{name}"] = (value, comments.get(name, ""))

    walk(Config, Config(), "")
    return docs


def method_label(config: Config) -> str:
    """The run's method name in tables, W&B and sweeps: ``label`` when the preset sets one, else
    its parts."""
    if config.label:
        return config.label
    agent = config.agent
    return f"{agent.algorithm} {agent.actor}/{agent.critic} {agent.critic_grad}/{agent.actor_grad}"
