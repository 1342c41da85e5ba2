"""What a run directory says about itself: ``run.json`` with its provenance and its protocol.

A number in a paper is only as good as what can be said about how it was made. Every run records
the code (mtrl version, git commit and whether the checkout had uncommitted changes), the libraries
that shape the numbers (torch, Meta-World, MuJoCo, gymnasium, numpy, Python), the command line, the
host and the times, and the evaluation protocol (``protocol``), which ``mtrl report`` compares
before it puts runs in one table. Checkpoints carry the same record.
"""

from __future__ import annotations

import json
import platform
import shlex
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from mtrl import envs, gradients
from mtrl.agents import networks
from mtrl.config import Config, build_config
from mtrl.envs import episode_steps, is_metaworld, resolve_task_names
from mtrl.errors import RunError
from mtrl.evaluation import GOAL_SCHEME

DISTRIBUTION = "mtrl-suite"
LIBRARIES = ("torch", "metaworld", "mujoco", "gymnasium", "numpy")
# The protocol fields that must agree for runs to share a table (seeds and sizes may differ).
COMPARED_PROTOCOL_FIELDS = (
    "env",
    "reward_version",
    "max_episode_steps",
    "final_eval_episodes",
    "goal_scheme",
    "steps_per_task",
)


def check_specs(config: Config) -> Config:
    """The names of registered things in a config, each checked by its own registry (env and
    tasks, gradient methods, networks with their options, widths and initialisation): one
    ConfigError line for the first bad one. ``config.validate`` checks plain values."""
    num_tasks = envs.check_spec(config.env.name)
    agent = config.agent
    for key, spec in (
        ("agent.actor_grad", agent.actor_grad),
        ("agent.critic_grad", agent.critic_grad),
    ):
        gradients.check_spec(key, spec)
    for key, spec in (("agent.actor", agent.actor), ("agent.critic", agent.critic)):
        networks.check_spec(key, spec, agent.hidden_sizes, num_tasks, agent.init)
    return config


def build_run_config(preset: str | Path | None, overrides: list[str] | None = None) -> Config:
    """``config.build_config`` and the registries' checks: the config a run may start from."""
    return check_specs(build_config(preset, overrides))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    return torch.device(name)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """``git args`` in the checkout this package was imported from; None outside a checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def provenance(started_at: str | None = None) -> dict[str, Any]:
    """Code, libraries, command, host and start time of this process."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    return {
        "mtrl_version": _version(DISTRIBUTION),
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "versions": {"python": platform.python_version()}
        | {name: _version(name) for name in LIBRARIES},
        "command": shlex.join(argv),
        "host": socket.gethostname(),
        "started_at": started_at or now(),
        "ended_at": None,
    }


def protocol(config: Config, parameter_counts: dict[str, int]) -> dict[str, Any]:
    """How the run's numbers were made: what ``mtrl report`` checks before comparing runs."""
    metaworld = is_metaworld(config.env.name)
    return {
        "env": config.env.name,
        "tasks": len(resolve_task_names(config.env.name)),
        "reward_version": config.env.reward_version if metaworld else None,
        "max_episode_steps": episode_steps(config.env.name, config.env.max_episode_steps),
        "eval_episodes": config.eval_episodes,
        "final_eval_episodes": config.final_eval_episodes,
        "goal_scheme": GOAL_SCHEME,
        "steps_per_task": config.total_steps,
        "seed": config.seed,
        "actor_parameters": int(parameter_counts["actor"]),
        "critic_parameters": int(parameter_counts["critic"]),
    }


class RunInfo:
    """Writes ``run.json``: status and step (kept true while the run goes on: rewritten at every
    checkpoint, and when the run ends, with the reason where it stopped early), tasks, parameter
    counts, device, provenance and protocol. A resumed run keeps its first start time and adds
    each resume to ``resumed_at``."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        task_names: list[str],
        parameter_counts: dict[str, int],
        device: str,
        resume: bool = False,
        **extra: Any,
    ) -> None:
        self.path = run_dir / "run.json"
        previous = read_run_info(run_dir) if resume else {}
        self.provenance = provenance(previous.get("provenance", {}).get("started_at"))
        self.resumed_at = list(previous.get("resumed_at", []))
        if previous.get("provenance"):
            self.resumed_at.append(now())
        self.fixed = {
            "task_names": task_names,
            "parameter_counts": parameter_counts,
            "device": device,
            **extra,
            "protocol": protocol(config, parameter_counts),
        }

    def record(self) -> dict[str, Any]:
        """Provenance and protocol, as checkpoints carry them."""
        return {"provenance": self.provenance, "protocol": self.fixed["protocol"]}

    def write(self, status: str, step: int, reason: str | None = None) -> None:
        """``status``: running, finished, interrupted or failed; ``reason``: why it stopped."""
        if status in ("finished", "interrupted", "failed"):
            self.provenance["ended_at"] = now()
        info: dict[str, Any] = {"status": status, "step": step}
        if reason:
            info["reason"] = reason
        info.update({**self.fixed, "provenance": self.provenance})
        if self.resumed_at:
            info["resumed_at"] = self.resumed_at
        temporary = self.path.with_suffix(".json.tmp")
        try:  # whole or not at all: a full disk leaves the previous run.json
            temporary.write_text(json.dumps(info, indent=2))
            temporary.replace(self.path)
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error), str(self.path)) from error
        finally:
            temporary.unlink(missing_ok=True)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """A run directory's run.json as a dict; empty where there is none or it is unreadable."""
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
