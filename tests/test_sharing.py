"""Runs that share a machine: each training process registers itself, and one that chose no
torch_threads takes its share of the cores as others start and end; one with fixed threads warns
where they oversubscribe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import mtrl
from mtrl import sharing
from mtrl.config import build_config
from mtrl.run import share_cores
from mtrl.sharing import CoreShare, other_training_processes, oversubscription


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


def test_live_registered_processes_are_counted_and_dead_ones_cleared(tmp_path, another_process):
    gone = dead_pid()
    for name in (str(os.getpid()), str(another_process.pid), str(gone), "notes.txt"):
        (tmp_path / name).touch()
    assert other_training_processes(tmp_path) == 1  # not itself, not the dead, not the file
    assert not (tmp_path / str(gone)).exists()
    assert (tmp_path / "notes.txt").exists()
    assert other_training_processes(tmp_path / "missing") == 0


def test_a_run_that_chose_no_threads_takes_its_share_and_gives_it_back(tmp_path, another_process):
    threads = Threads(2)
    share = CoreShare(True, threads.get, threads.set, tmp_path, cores=2, interval_s=0.0)
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
    share = CoreShare(True, threads.get, threads.set, tmp_path, cores=2, interval_s=3600.0)
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


@pytest.mark.parametrize(
    ("overrides", "adapts"),
    [([], True), (["torch_threads=1"], False), (["deterministic=true"], False)],
)
def test_a_training_run_is_registered_while_it_trains(tmp_path, monkeypatch, overrides, adapts):
    monkeypatch.setattr(sharing, "registry", lambda: tmp_path / "registry")
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
