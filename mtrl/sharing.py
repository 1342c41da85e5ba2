"""How a training process shares the machine's cores with other ones.

Measured on 2 cores with AMX (2026-12-02, MT10, 3 x 400, 128 per task; ``mtrl bench`` (f)):
- one run alone gains 1.92x from its second thread (166 env steps/s against 86 with one);
- two runs at once with two threads each collapse while OpenMP's threads spin, waiting for work,
  on each other's cores: 10 env steps/s each; with ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep)
  82-83 each, but PASSIVE also costs a run alone ~20% (a thread woken from sleep for every
  parallel region: the MT10 update 61 -> 77 ms in fp32, 28 -> 47 ms in bf16);
- two runs that take one thread each: 84-85 each, the most two runs get out of two cores.

So a run keeps OpenMP's spinning default and, where it chose no ``torch_threads`` itself, takes
its share of the cores: each training process registers itself in a per-user directory, looks
every few seconds at how many others are registered, and sets its torch threads to
cores / runs (back up when they end). A process spinning on one thread waits for nobody.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def registry() -> Path:
    """Where this user's training processes register (one empty file per process id)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"mtrl-training-{uid}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (anyone's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def other_training_processes(directory: Path | None = None) -> int:
    """How many other live training processes are registered (a file left by a process that died
    without leaving is removed here)."""
    directory = directory or registry()
    count, me = 0, os.getpid()
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            if process_alive(int(entry.name)):
                count += 1
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()
    return count


def fair_threads(cores: int, processes: int) -> int:
    return max(1, cores // max(1, processes))


def oversubscription(threads: int, others: int, cores: int) -> str | None:
    """A one-line warning where this run's fixed torch threads and the other runs' (taken to use
    as many) ask for more cores than there are; None where they fit."""
    processes = others + 1
    if processes * threads <= cores:
        return None
    return (
        f"{processes} mtrl training processes share {cores} cores with {threads} torch threads "
        f"each; set torch_threads={fair_threads(cores, processes)} (or 0, which shares by "
        "itself) for runs that share this machine"
    )


class CoreShare:
    """One training process's place among the others: registered while it trains, and, where it
    adapts (``torch_threads=0`` and not deterministic: changing the thread count changes the
    order of floating-point sums), its torch threads kept at its share of the cores.

    ``set_threads`` and ``get_threads`` are torch's (injected, so that this module stays below
    torch and its tests need no processes).
    """

    def __init__(
        self,
        adapt: bool,
        get_threads,
        set_threads,
        directory: Path | None = None,
        cores: int | None = None,
        interval_s: float = 5.0,
    ) -> None:
        self.adapt, self.get_threads, self.set_threads = adapt, get_threads, set_threads
        self.directory = directory or registry()
        self.cores = cores or usable_cores()
        self.interval_s = interval_s
        self.own_threads = get_threads()  # what this process would use alone
        self._next_check = 0.0
        self._file: Path | None = None

    def enter(self) -> str | None:
        """Registers this process; returns what changed (threads) or a warning, for the log."""
        with contextlib.suppress(OSError):
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._file = self.directory / str(os.getpid())
            self._file.touch()
        if not self.adapt:
            others = other_training_processes(self.directory)
            warning = oversubscription(self.own_threads, others, self.cores)
            return warning and f"warning: {warning}"
        return self.check(force=True)

    def check(self, force: bool = False) -> str | None:
        """At most every ``interval_s``: the thread count for the runs registered now; a line
        saying so where it changed, else None."""
        now = time.monotonic()
        if not self.adapt or (not force and now < self._next_check):
            return None
        self._next_check = now + self.interval_s
        processes = other_training_processes(self.directory) + 1
        threads = min(self.own_threads, fair_threads(self.cores, processes))
        current = self.get_threads()
        if threads == current:
            return None
        self.set_threads(threads)
        return (
            f"{processes} mtrl training {'process' if processes == 1 else 'processes'} on "
            f"{self.cores} cores: torch threads {current} -> {threads}"
        )

    def leave(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink()
            self._file = None
