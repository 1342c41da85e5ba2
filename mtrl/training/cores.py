"""How a training process shares the machine's cores with other ones.

Two runs at once with a thread per core each collapse while OpenMP's threads spin, waiting for
work, on each other's cores; ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep) avoids that but slows a
run alone (a thread is woken from sleep for every parallel region); two runs that take one thread
each get the most out of the cores (``mtrl bench`` (f); docs/benchmarks.md and docs/training.md
have the numbers).

The same collapse follows any busy process beside a run, not only another run: TensorBoard, an
evaluation, a notebook, another job. So a run keeps OpenMP's spinning default and, where it chose
no ``torch_threads`` itself, takes only the cores left to it: each training process registers
itself in a per-user directory, and every few seconds it reads how many others are registered
(cores / runs each) and how much of its cores other processes used since its last look
(``/proc/stat`` less its own processes' time, ``/proc/<pid>/stat``), and sets its torch threads to
the smaller count (back up when they end). A process spinning on one thread waits for nobody.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Others' use of a core, in cores, above which it counts as taken (a run with fewer threads then),
# and below which a taken core counts as free again: the gap keeps a load near one threshold from
# flapping the thread count at every look.
TAKEN_ABOVE = 0.35
FREE_BELOW = 0.15
# Ticks (1/100 s each, summed over the cores) a reading must span to be told from noise.
MIN_TICKS = 20


def usable_cpus() -> set[int] | None:
    """The CPUs this process may run on; None where the platform does not say (not Linux)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def usable_cores() -> int:
    cpus = usable_cpus()
    return len(cpus) if cpus else os.cpu_count() or 1


# ------------------------------------------------------------------- other processes' demand
@dataclass(frozen=True)
class CpuReading:
    """One look at the cores: clock ticks since boot, summed over this process's CPUs."""

    busy: int  # ticks of the work that competes with this run's (its own included)
    total: int  # ticks, busy or idle
    own: dict[int, int]  # this run's processes' ticks (user + system), by process id


def cpu_ticks(stat_text: str, cpus: set[int] | None) -> tuple[int, int]:
    """(busy, total) ticks of ``/proc/stat``'s lines of ``cpus`` (all where None). Niced
    processes' time (the ``nice`` column) is busy too: niceness orders processes only within
    one scheduling group, and a job niced in another session (another terminal, tmux, ``setsid
    nohup``) has its own group (Linux's autogroup), which weighs as much as this run's; a run on
    a thread per core then collapses beside it (docs/training.md has the numbers)."""
    busy = total = 0
    for line in stat_text.splitlines():
        name, *values = line.split() or [""]
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, total


def process_ticks(stat_text: str) -> tuple[int, int]:
    """(parent process id, user + system ticks) of a ``/proc/<pid>/stat`` line."""
    fields = stat_text[stat_text.rindex(")") + 2 :].split()  # the name may hold spaces
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree_ticks(root: int, proc: Path = PROC) -> dict[int, int]:
    """Ticks of ``root`` and its live descendants (a sharded env's workers), by process id."""
    parents, ticks = {}, {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)], ticks[int(entry.name)] = process_ticks(
                (entry / "stat").read_text()
            )
        except (OSError, ValueError, IndexError):  # ended while we looked
            continue
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in ticks and pid not in tree:
            tree[pid] = ticks[pid]
            frontier += children.get(pid, [])
    return tree


def read_cpu(
    proc: Path = PROC, cpus: set[int] | None = None, pid: int | None = None
) -> CpuReading | None:
    """This run's view of its cores now (``CpuReading``); None where there is no ``/proc``."""
    try:
        busy, total = cpu_ticks((proc / "stat").read_text(), cpus)
        return CpuReading(busy, total, tree_ticks(pid or os.getpid(), proc))
    except (OSError, ValueError):
        return None


def others_cores(before: CpuReading, after: CpuReading, cores: int) -> float | None:
    """Cores that processes other than this run's kept busy between two readings, on average;
    None where the readings are too close to tell. A process of the run that started between
    them counts all its ticks; one that ended takes its last ticks with it (a small overcount)."""
    elapsed = after.total - before.total
    if elapsed < MIN_TICKS:
        return None
    own = sum(ticks - before.own.get(pid, 0) for pid, ticks in after.own.items())
    return max(0, after.busy - before.busy - own) / elapsed * cores


def cores_taken(others: float, threshold: float) -> int:
    """Whole cores that ``others`` cores of use take, a core counting once more than
    ``threshold`` of it is used."""
    return max(0, math.ceil(others - threshold))


def threads_beside(others: float, current: int, cores: int) -> int:
    """Torch threads for a run whose cores other processes keep ``others`` busy: the cores they
    leave, at least one; fewer at once where they take a core, more only once they leave one
    clearly free (``TAKEN_ABOVE``, ``FREE_BELOW``). Others measured while this run spins on
    its threads get a share of the cores only, never more than they want: enough to say that a
    core is taken, and the next look, on fewer threads, sees all of it."""
    fewer = max(1, cores - cores_taken(others, TAKEN_ABOVE))
    if fewer < current:
        return fewer
    return max(current, max(1, cores - cores_taken(others, FREE_BELOW)))


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
    """How many other live training processes are registered, niced ones too (see
    ``cpu_ticks``); a file left by a process that died without leaving is removed here."""
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
    fair = fair_threads(cores, processes)
    if threads > fair:
        advice = f"set torch_threads={fair} (or 0, which shares by itself) for runs that share this machine"
    else:  # already one thread each: fewer threads cannot help, only fewer runs at once
        advice = f"each gets about {cores}/{processes} of a core; run at most {cores} at once"
    return (
        f"{processes} mtrl training processes share {cores} cores with {threads} torch threads "
        f"each; {advice}"
    )


class CoreShare:
    """One training process's place among the others: registered while it trains, and, where it
    adapts (``torch_threads=0`` and not deterministic: changing the thread count changes the
    order of floating-point sums), its torch threads kept at the cores the others leave it.

    ``set_threads`` and ``get_threads`` are torch's and ``reader`` looks at the cores
    (``read_cpu``): injected, so that this module stays below torch and its tests need no
    processes or load.
    """

    def __init__(
        self,
        adapt: bool,
        get_threads,
        set_threads,
        directory: Path | None = None,
        cores: int | None = None,
        interval_s: float = 5.0,
        reader: Callable[[], CpuReading | None] | None = None,
    ) -> None:
        self.adapt, self.get_threads, self.set_threads = adapt, get_threads, set_threads
        self.directory = directory or registry()
        self.cores = cores or usable_cores()
        self.interval_s = interval_s
        self.own_threads = get_threads()  # what this process would use alone
        self._next_check = 0.0
        self._file: Path | None = None
        self.reader = reader or functools.partial(read_cpu, PROC, usable_cpus())
        # The first look spans the run's start (env and agent built), before it spins.
        self._reading = self.reader() if adapt else None

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

    def others_cores(self) -> float | None:
        """Cores other processes used since the last look that could tell (None: none could)."""
        reading = self.reader()
        if reading is None or self._reading is None:
            self._reading = reading
            return None
        others = others_cores(self._reading, reading, self.cores)
        if others is not None:  # else the next look spans this one's time too
            self._reading = reading
        return others

    def check(self, force: bool = False) -> str | None:
        """At most every ``interval_s``: the thread count for the runs registered now and the
        cores other processes use; a line saying so where it changed, else None."""
        now = time.monotonic()
        if not self.adapt or (not force and now < self._next_check):
            return None
        self._next_check = now + self.interval_s
        processes = other_training_processes(self.directory) + 1
        current = self.get_threads()
        threads = min(self.own_threads, fair_threads(self.cores, processes))
        others = self.others_cores()
        if others is not None:
            threads = min(threads, threads_beside(others, current, self.cores))
        if threads == current:
            return None
        self.set_threads(threads)
        runs = f"{processes} mtrl training {'process' if processes == 1 else 'processes'}"
        load = "" if others is None else f", other processes using {others:.1f} of them"
        return f"{runs} on {self.cores} cores{load}: torch threads {current} -> {threads}"

    def leave(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink()
            self._file = None
