"""The errors that mean "bad input", which the CLI reports in one line with exit code 2."""

from __future__ import annotations

from mtrl.checkpoint import CheckpointError
from mtrl.config import ConfigError
from mtrl.envs.base import EnvError
from mtrl.trainer import RunError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, EnvError, CheckpointError, RunError)
