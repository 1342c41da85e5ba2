"""How a training process shares the machine's cores with other ones.

Measured on 2 cores (DESIGN.md; the quickstart's shape, 2,500 steps): two default training
processes at once took 264 s each against 75 s for one alone, because OpenMP's threads spin while
they wait and the two processes' spinning threads take each other's cores; with
``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead) each took 78 s, against 82 s alone. OpenMP reads the variable once,
when torch loads it, so ``mtrl`` sets it on import, before torch, unless the user has set it.
"""

from __future__ import annotations

import os
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waits() -> None:
    """Sleeping rather than spinning OpenMP threads, unless the user chose; only takes effect if
    torch has not been imported yet."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def other_training_processes(proc: Path = Path("/proc")) -> int:
    """How many other ``mtrl train`` processes run on this machine (Linux; 0 where /proc is not
    there). A sweep's runs and a user's second seed count; evaluations and reports do not."""
    count, me = 0, os.getpid()
    for entry in proc.glob("[0-9]*"):
        if int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        words = [Path(arg.decode(errors="replace")).name for arg in argv if arg]
        for k in range(len(words) - 1):
            if words[k] in ("mtrl", "mtrl.cli") and words[k + 1] == "train":
                count += 1
                break
    return count


def oversubscription(threads: int, others: int, cores: int) -> str | None:
    """A one-line warning where this run's torch threads and the other runs' (taken to use as
    many) ask for more cores than there are; None where they fit."""
    processes = others + 1
    if processes * threads <= cores:
        return None
    fair = max(1, cores // processes)
    return (
        f"{processes} mtrl training processes share {cores} cores with {threads} torch threads "
        f"each; set torch_threads={fair} for runs that share this machine"
    )
