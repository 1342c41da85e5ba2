"""The optional dependencies (pyproject's extras), checked before a run that needs one starts:
one line naming the extra to install, never an ImportError hours in."""

from __future__ import annotations

import importlib.util

from mtrl.errors import ConfigError

# module -> the extra that installs it
EXTRAS = {
    "wandb": "wandb",
    "imageio": "video",
    "stable_baselines3": "baselines",
    "ray": "ray",
    "optuna": "optuna",
    "submitit": "slurm",
}


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def install_hint(module: str) -> str:
    return f"pip install 'mtrl-suite[{EXTRAS[module]}]'"


def require(module: str, needed_by: str) -> None:
    """A ConfigError line if ``module`` is not installed: ``needed_by`` needs it."""
    if not available(module):
        raise ConfigError(
            f"{needed_by} needs {module}, which is not installed: {install_hint(module)}"
        )
