"""Runs that share a machine: OpenMP threads that sleep rather than spin (set before torch loads),
and a warning when the runs' torch threads ask for more cores than there are."""

from __future__ import annotations

import os
import subprocess
import sys

from mtrl.sharing import other_training_processes, oversubscription

PROBE = "import os, sys, mtrl; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"


def python(code: str, **variables: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | variables
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_mtrl_asks_for_passive_waits_before_torch_loads():
    assert python(PROBE) == "PASSIVE False"


def test_a_users_wait_policy_is_kept():
    assert python(PROBE, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"


def test_other_training_processes_are_counted_from_their_command_lines(tmp_path):
    commands = {
        101: ["/usr/bin/python3", "-m", "mtrl", "train", "--config", "mt10/mt_sac"],
        102: ["/home/u/.venv/bin/mtrl", "train", "seed=2"],
        103: ["python", "-m", "mtrl.cli", "train", "--resume", "runs/a"],  # a sweep's run
        104: ["/home/u/.venv/bin/mtrl", "eval", "runs/a"],  # reads, trains nothing
        105: ["python", "benchmarks/train.py"],
        os.getpid(): ["python", "-m", "mtrl", "train"],  # this process
    }
    for pid, argv in commands.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "self").mkdir()  # not a pid
    (tmp_path / "106").mkdir()  # a process gone before its cmdline was read
    assert other_training_processes(tmp_path) == 3


def test_oversubscription_warns_only_when_the_threads_exceed_the_cores():
    assert oversubscription(threads=2, others=0, cores=2) is None
    assert oversubscription(threads=1, others=1, cores=2) is None
    message = oversubscription(threads=2, others=1, cores=2)
    assert message == (
        "2 mtrl training processes share 2 cores with 2 torch threads each; "
        "set torch_threads=1 for runs that share this machine"
    )
    assert "torch_threads=2" in oversubscription(threads=8, others=3, cores=8)
