"""Hooks into a training run from Python: watch its logs, evaluations and checkpoints, or stop it.

stable-baselines3's callbacks, reduced to the three moments a multi-task run has. Subclass
``Callback`` or pass functions (``Callback(on_eval=print_success)``). A hook that returns ``False``
stops the run cleanly at that step boundary: a checkpoint is written, ``run.json`` says the run was
stopped by a callback, and ``mtrl train --resume`` (or ``mtrl.train(resume=...)``) continues it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HOOKS = ("on_log", "on_eval", "on_checkpoint")


class Callback:
    """``on_log(step, scalars)``: every ``log_every`` steps, the scalars that go to the logs.
    ``on_eval(step, results, final)``: after each evaluation, per-task ``TaskResult``s.
    ``on_checkpoint(step, path)``: after each checkpoint is written.
    Each returns None (or True) to go on, False to stop the run."""

    def __init__(self, **hooks: Callable[..., bool | None]) -> None:
        unknown = set(hooks) - set(HOOKS)
        if unknown:
            raise TypeError(f"unknown callback hook {', '.join(sorted(unknown))}; hooks: {HOOKS}")
        for name, function in hooks.items():
            setattr(self, name, function)

    def on_log(self, step: int, scalars: dict[str, float]) -> bool | None:
        return None

    def on_eval(self, step: int, results: dict[str, Any], final: bool) -> bool | None:
        return None

    def on_checkpoint(self, step: int, path: Path) -> bool | None:
        return None


class Callbacks:
    """Several callbacks as one: each hook calls all of them; the run stops if any says False."""

    def __init__(self, callbacks: Callback | Iterable[Callback] | None = None) -> None:
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback):
            callbacks = [callbacks]
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be mtrl.Callback objects, got {callback!r}")
        self.stop_requested: str | None = None

    def fire(self, hook: str, *args: Any) -> None:
        """Calls ``hook`` on every callback; a False remembers which asked to stop."""
        for callback in self.callbacks:
            if getattr(callback, hook)(*args) is False and self.stop_requested is None:
                self.stop_requested = f"callback {type(callback).__name__}.{hook}"
