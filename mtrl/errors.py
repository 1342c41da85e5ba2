"""Every user-facing error of mtrl, in one leaf module that imports nothing of mtrl.

The CLI prints any ``UserError`` on one line and exits with its ``exit_code`` (2: bad input or a
refusal; 1: a run stopped by the machine, such as a full disk), instead of a traceback. Keeping them
here lets every layer raise them without importing the layer that catches them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path


class UserError(Exception):
    """Base of the errors meant for the user: always one line (line breaks in echoed user text are
    escaped), with the CLI's exit code."""

    exit_code = 2

    def __init__(self, message: str = "") -> None:
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))


class ConfigError(UserError, ValueError):
    """A bad key or value in a preset, a YAML file or an override."""


class EnvError(UserError, ValueError):
    """A task set that cannot be built (unknown task, bad option)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be trusted or used; the message names the file."""


class RunError(UserError, RuntimeError):
    """A run that cannot start or continue."""


class RunWriteError(RunError):
    """A run stopped because the disk would not take a write (full, I/O error); the last good
    checkpoint is left intact to resume from."""

    exit_code = 1


class RunFinishedError(UserError):
    """A resume of a run whose final evaluation is written and which asks for no more steps:
    nothing to do, and not a failure (exit code 0; ``mtrl sweep`` skips such a run too)."""

    exit_code = 0


class UsageError(UserError, ValueError):
    """A command's arguments that cannot be honoured (--episodes 0, a task the policy never saw)."""


class VideoError(UserError, RuntimeError):
    """A video that cannot be written (format, missing imageio, an encoder failure)."""


class ExportError(UserError, ValueError):
    """A policy that cannot be exported as asked (not task-routed, an unknown task)."""


class RunLockedError(UserError, RuntimeError):
    """A run directory another writer holds, or that cannot be locked."""


class OutputError(UserError, RuntimeError):
    """A result that cannot be written where asked (a read-only directory, a full disk); the
    message names the path. Nothing of a run is lost: only the command's own output failed."""


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turns an ``OSError`` raised inside into one OutputError line naming the file it names, or
    else ``path`` (the file or directory being written)."""
    try:
        yield
    except OSError as error:
        where = error.filename or path
        raise OutputError(f"cannot write {where} ({error.strerror or error})") from None


def warn(message: str) -> None:
    """A one-line warning on stderr (``mtrl: warning: ...``), for what goes on without the thing
    warned about; line breaks in echoed text become spaces."""
    print(f"mtrl: warning: {' '.join(str(message).split())}", file=sys.stderr)


USER_ERRORS: tuple[type[Exception], ...] = (UserError,)


def counted(number: int, noun: str) -> str:
    """``number`` and ``noun`` for a message: "1 episode", "5 episodes"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
