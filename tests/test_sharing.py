"""Runs that share a machine: each training process registers itself, and one that chose no
torch_threads takes its share of the cores as others start and end, and leaves the cores that
other busy processes use (read from a fake /proc here); one with fixed threads warns where they
oversubscribe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import mtrl
from mtrl.config import build_config
from mtrl.training import cores
from mtrl.training.cores import (
    CoreShare,
    CpuReading,
    cpu_ticks,
    other_training_processes,
    others_cores,
    oversubscription,
    read_cpu,
    threads_beside,
)
from mtrl.training.run import share_cores


@pytest.fixture
def another_process():
    """A live process that is not this one: stands for another training run."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


class Threads:
    """torch's get/set_num_threads, recorded."""

    def __init__(self, threads: int) -> None:
        self.threads, self.calls = threads, []

    def get(self) -> int:
        return self.threads

    def set(self, threads: int) -> None:
        self.threads = threads
        self.calls.append(threads)


def quiet() -> CpuReading:
    """A look at cores that nothing else uses."""
    return CpuReading(busy=0, total=0, own={})


def test_live_registered_processes_are_counted_and_dead_ones_cleared(tmp_path, another_process):
    gone = dead_pid()
    for name in (str(os.getpid()), str(another_process.pid), str(gone), "notes.txt"):
        (tmp_path / name).touch()
    assert other_training_processes(tmp_path) == 1  # not itself, not the dead, not the file
    assert not (tmp_path / str(gone)).exists()
    assert (tmp_path / "notes.txt").exists()
    assert other_training_processes(tmp_path / "missing") == 0


def test_a_niced_run_is_counted_as_a_run(tmp_path):
    """A niced run started in another session weighs as much as this one (its own autogroup)."""
    niced = subprocess.Popen(
        [sys.executable, "-c", "import os, time; os.nice(19); print(flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        niced.stdout.readline()  # niced by now
        (tmp_path / str(niced.pid)).touch()
        assert other_training_processes(tmp_path) == 1
    finally:
        niced.kill()
        niced.wait()


def test_a_run_that_chose_no_threads_takes_its_share_and_gives_it_back(tmp_path, another_process):
    threads = Threads(2)
    share = CoreShare(
        True, threads.get, threads.set, tmp_path, cores=2, interval_s=0.0, reader=quiet
    )
    assert share.enter() is None  # alone: keeps both threads
    assert (tmp_path / str(os.getpid())).exists()
    (tmp_path / str(another_process.pid)).touch()  # a second run starts
    assert share.check() == "2 mtrl training processes on 2 cores: torch threads 2 -> 1"
    assert share.check() is None  # nothing changed since
    another_process.kill()
    another_process.wait()
    assert share.check() == "1 mtrl training process on 2 cores: torch threads 1 -> 2"
    assert threads.calls == [1, 2]
    share.leave()
    assert not (tmp_path / str(os.getpid())).exists()


def test_checks_are_spaced_by_the_interval(tmp_path, another_process):
    threads = Threads(2)
    share = CoreShare(
        True, threads.get, threads.set, tmp_path, cores=2, interval_s=3600.0, reader=quiet
    )
    share.enter()
    (tmp_path / str(another_process.pid)).touch()
    assert share.check() is None and threads.calls == []  # the next look is an hour away
    assert share.check(force=True) is not None and threads.calls == [1]


def test_fixed_threads_are_kept_and_warned_about(tmp_path, another_process):
    (tmp_path / str(another_process.pid)).touch()
    threads = Threads(2)
    share = CoreShare(False, threads.get, threads.set, tmp_path, cores=2, interval_s=0.0)
    assert share.enter() == (
        "warning: 2 mtrl training processes share 2 cores with 2 torch threads each; "
        "set torch_threads=1 (or 0, which shares by itself) for runs that share this machine"
    )
    assert share.check() is None and threads.calls == []
    assert CoreShare(False, Threads(1).get, None, tmp_path, cores=2).enter() is None


def test_oversubscription_warns_only_when_the_threads_exceed_the_cores():
    assert oversubscription(threads=2, others=0, cores=2) is None
    assert oversubscription(threads=1, others=1, cores=2) is None
    assert "torch_threads=2 " in oversubscription(threads=8, others=3, cores=8)
    # One thread each and more runs than cores: no thread count helps, and none is advised.
    crowded = oversubscription(threads=1, others=2, cores=2)
    assert "torch_threads" not in crowded.split(";")[1]
    assert "run at most 2 at once" in crowded


@pytest.mark.parametrize(
    ("overrides", "adapts"),
    [([], True), (["torch_threads=1"], False), (["deterministic=true"], False)],
)
def test_a_training_run_is_registered_while_it_trains(tmp_path, monkeypatch, overrides, adapts):
    monkeypatch.setattr(cores, "registry", lambda: tmp_path / "registry")
    seen = []
    threads = torch.get_num_threads()

    def on_log(step, scalars):
        seen.append(sorted(p.name for p in (tmp_path / "registry").iterdir()))

    try:
        mtrl.train(
            "synthetic",
            run_dir=tmp_path / "run",
            callbacks=mtrl.Callback(on_log=on_log),
            overrides=[
                "total_steps=200",
                "warmup_steps=100",
                "log_every=100",
                "eval_every=0",
                "final_eval_episodes=1",
                "progress=false",
                "agent.hidden_sizes=[16,16]",
                "agent.batch_size_per_task=8",
                *overrides,
            ],
        )
    finally:
        torch.set_num_threads(threads)
    assert seen == [[str(os.getpid())]] * 2
    assert list((tmp_path / "registry").iterdir()) == []  # left when it closed
    config = build_config(None, ["env.name=synthetic", *overrides])
    assert share_cores(config).adapt is adapts


# ------------------------------------------------------------------ other processes' demand
def write_proc(proc, cpus: dict[int, tuple[int, ...]], processes: dict[int, tuple[int, int]]):
    """A fake /proc: per-CPU ticks (user, nice, system, idle, iowait, irq, softirq, steal) and
    processes (parent, user ticks)."""
    proc.mkdir(exist_ok=True)
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]  # the total line, which the per-CPU lines replace
    lines += [f"cpu{n} {' '.join(map(str, ticks))} 0 0" for n, ticks in cpus.items()]
    (proc / "stat").write_text("\n".join(lines) + "\nintr 1 2 3\n")
    for pid, (parent, user) in processes.items():
        (proc / str(pid)).mkdir(exist_ok=True)
        (proc / str(pid) / "stat").write_text(
            f"{pid} (a (name) with spaces) R {parent} 1 1 0 -1 0 0 0 0 0 {user} 5 0 0 20 0 2 0"
        )


def test_cpu_ticks_count_the_cpus_asked_for_and_niced_time_as_busy():
    text = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 10 4 2 100 1 1 1 1 0 0\n\ncpu1 20 0 0 0 0 0 0 0 0 0\n"
    assert cpu_ticks(text, {0}) == (19, 120)
    assert cpu_ticks(text, None) == (39, 140)


def test_others_use_is_the_cores_busy_time_less_this_runs_processes(tmp_path):
    """Two 1-second looks at 2 cores (100 ticks each): this run and its env worker used 1.2
    cores, a niced stranger 0.8 (its time in the nice column, busy all the same); a process of
    the run that started between the looks counts whole."""
    proc = tmp_path / "proc"
    me, worker, stranger, late_worker = 100, 101, 200, 102
    write_proc(proc, {0: (0,) * 8, 1: (0,) * 8}, {me: (1, 0), worker: (me, 0), stranger: (1, 0)})
    before = read_cpu(proc, {0, 1}, pid=me)
    assert before.own == {me: 5, worker: 5}  # user + system, not the stranger's
    write_proc(
        proc,
        {0: (100, 0, 0, 0, 0, 0, 0, 0), 1: (20, 60, 20, 0, 0, 0, 0, 0)},
        {me: (1, 85), worker: (me, 25), stranger: (1, 80), late_worker: (worker, 5)},
    )
    after = read_cpu(proc, {0, 1}, pid=me)
    assert after.own == {me: 90, worker: 30, late_worker: 10}
    # busy 200 ticks of 200; the run's: 85 + 25 + 10 = 120, so others 80 ticks: 0.8 of 2 cores
    assert others_cores(before, after, cores=2) == pytest.approx(0.8)
    assert others_cores(before, before, cores=2) is None  # no time between: cannot tell


def test_threads_leave_the_cores_others_take_and_do_not_flap():
    # Alone, or beside TensorBoard's 0.1 of a core: every core.
    assert threads_beside(0.0, current=2, cores=2) == 2
    assert threads_beside(0.1, current=2, cores=2) == 2
    # One busy process beside two spinning threads gets a fair share, 2/3 of a core: taken.
    assert threads_beside(0.67, current=2, cores=2) == 1
    # On one thread it gets its whole core: stays taken; never fewer than one thread.
    assert threads_beside(1.0, current=1, cores=2) == 1
    assert threads_beside(5.0, current=1, cores=2) == 1
    # Between the thresholds nothing changes, either way: no flapping around one level.
    assert threads_beside(0.25, current=2, cores=2) == 2
    assert threads_beside(0.25, current=1, cores=2) == 1
    # The core comes back once it is clearly free.
    assert threads_beside(0.05, current=1, cores=2) == 2
    # 16 cores, 3 busy processes beside 16 spinning threads (16/19 of a core each): 13 threads.
    assert threads_beside(3 * 16 / 19, current=16, cores=16) == 13


class Looks:
    """Successive CpuReadings, as from a fake /proc: others' ticks per look on 2 cores."""

    def __init__(self, others_per_look: list[int]) -> None:
        self.others, self.busy, self.total = list(others_per_look), 0, 0

    def __call__(self) -> CpuReading:
        if self.total:  # the first look is the start
            self.busy += self.others.pop(0)
        self.total += 200  # a second of 2 cores
        return CpuReading(self.busy, self.total, {})


def test_a_default_run_gives_a_busy_process_its_core_and_takes_it_back(tmp_path):
    threads = Threads(2)
    # others' ticks per second of 2 cores: a busy process appears, stays, and ends
    looks = Looks([0, 100, 100, 30, 0])
    share = CoreShare(
        True, threads.get, threads.set, tmp_path, cores=2, interval_s=0.0, reader=looks
    )
    assert share.enter() is None  # quiet at the start: both threads
    assert share.check() == (
        "1 mtrl training process on 2 cores, other processes using 1.0 of them: "
        "torch threads 2 -> 1"
    )
    assert share.check() is None  # still there
    assert share.check() is None  # 0.3 of a core: not clearly free yet
    assert share.check() == (
        "1 mtrl training process on 2 cores, other processes using 0.0 of them: "
        "torch threads 1 -> 2"
    )
    assert threads.calls == [1, 2]


def test_a_run_with_fixed_threads_keeps_them_beside_a_busy_process(tmp_path):
    threads = Threads(2)
    looks = Looks([200, 200])
    share = CoreShare(
        False, threads.get, threads.set, tmp_path, cores=2, interval_s=0.0, reader=looks
    )
    assert share.enter() is None and share.check() is None and threads.calls == []
