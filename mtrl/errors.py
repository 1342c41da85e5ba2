"""The errors that mean "bad input", which the CLI reports in one line with exit code 2."""

from __future__ import annotations

from mtrl.checkpoint import CheckpointError
from mtrl.config import ConfigError
from mtrl.envs.base import EnvError
from mtrl.lock import RunLockedError
from mtrl.trainer import RunError

# Printed in one line; exit code 2, or the error's ``exit_code`` (RunWriteError: 1, a run that
# stopped on a failed write rather than bad input).
USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    EnvError,
    CheckpointError,
    RunError,
    RunLockedError,
)
