"""Functions built once and, with ``agent.compile``, compiled once: the agent's gradient passes and
TD targets go through here so that each is traced a single time per run."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch


class Passes:
    """``run(key, build, *args)`` is ``build()(*args)``, the function built on the key's first call.

    Compiling (torch.compile, seconds, once) makes the per-task passes, the mean updates and the TD
    targets faster (docs/benchmarks.md). Where it fails (no C++ toolchain, an unsupported op) the
    function runs eagerly, with a warning.
    """

    def __init__(self, compile: bool) -> None:
        self.compile = compile
        self.functions: dict[str, Callable[..., Any]] = {}

    @property
    def compiles(self) -> bool:
        """``agent.compile``, unless torch.compile is off for the whole process
        (TORCH_COMPILE_DISABLE=1): then plain autograd is the faster eager way to the mean."""
        if not self.compile:
            return False
        import torch._dynamo  # noqa: PLC0415 (torch imports it lazily; so does this)

        return not torch._dynamo.config.disable

    def run(self, key: str, build: Callable[[], Callable[..., Any]], *args: Any) -> Any:
        function = self.functions.get(key)
        if function is not None:
            return function(*args)
        function = self.functions[key] = build()
        if not self.compiles:
            return function(*args)
        try:
            compiled = torch.compile(function, dynamic=False)
            result = compiled(*args)
        except Exception as error:  # eager still works
            warnings.warn(
                f"torch.compile of {key} failed ({type(error).__name__}); running it eagerly",
                stacklevel=3,
            )
            return function(*args)
        self.functions[key] = compiled
        return result
