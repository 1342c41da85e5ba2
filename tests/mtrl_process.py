"""Shared by the tests that run ``python -m mtrl`` as a user's shell does, on tiny synthetic runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# A synthetic run of seconds: 300 steps, evaluations and checkpoints every 100.
TINY = [
    "total_steps=300",
    "warmup_steps=100",
    "agent.hidden_sizes=[16,16]",
    "agent.batch_size_per_task=8",
    "eval_every=100",
    "eval_episodes=1",
    "final_eval_episodes=2",
    "checkpoint_every=100",
    "log_every=100",
    "progress=false",
]


def run_mtrl(*args: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """``python -m mtrl ARGS`` from the repository root; ``env`` sets variables (None: unsets)."""
    variables = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            variables.pop(name, None)
        else:
            variables[name] = value
    return subprocess.run(
        [sys.executable, "-m", "mtrl", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=variables,
    )
