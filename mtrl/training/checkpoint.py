"""Checkpoints that are safe to share and safe to kill.

A file is ``MAGIC | format version | sha256 of the body | body`` where the body is a ``torch.save`` of
tensors and plain data. Loading checks the header and the checksum first and then unpickles with
``weights_only=True``, so a file never runs code: anything beyond tensors and plain containers is
refused. Writes go to a temporary file that is fsynced and renamed over the target, so a kill at any
moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from mtrl.errors import CheckpointError
from mtrl.training.cores import process_alive

MAGIC = b"MTRLCKPT"
FORMAT_VERSION = 2  # 2: critics as ensemble members, task-specific parameters [T, ...]
_HEADER = struct.Struct(">8sI32s")  # magic, format version, sha256 of the body
_STEP_FILE = re.compile(r"step_(\d+)\.pt$")
_PARTIAL_FILE = re.compile(r"^\..+\.tmp-(\d+)$")  # atomic_write_bytes' temporary file


def finite_agent_state(state: dict[str, Any]) -> bool:
    """Whether an agent's ``state_dict`` has finite networks (parameters and running statistics)
    and temperatures: a policy with finite actions, and a checkpoint worth resuming from."""
    tensors = [state.get("log_alpha")]
    for name in ("actor", "critic", "critic_target"):
        tensors += list(state.get(name, {}).values())
    return all(
        bool(t.isfinite().all())
        for t in tensors
        if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``path`` whole or not at all; an ``OSError`` (a full disk, say) names ``path`` and
    leaves what was there before."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error


def remove_partial_writes(directory: Path) -> list[Path]:
    """Removes the temporary files under ``directory`` that ``atomic_write_bytes`` left where its
    writer was killed mid-write; a live process's (a write going on) are kept."""
    removed = []
    for path in directory.rglob(".*.tmp-*"):
        match = _PARTIAL_FILE.match(path.name)
        if match and not process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    body = buffer.getvalue()
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(body).digest())
    atomic_write_bytes(Path(path), header + body)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = latest_checkpoint(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read checkpoint ({error.strerror})") from None
    if len(data) < _HEADER.size or not data.startswith(MAGIC):
        raise CheckpointError(f"{path}: not an mtrl checkpoint (bad header or truncated)")
    _, version, digest = _HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version} is not supported (this mtrl reads {FORMAT_VERSION})"
        )
    body = data[_HEADER.size :]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch (the file is truncated or corrupt)")
    try:
        payload = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    except Exception as error:  # the unpickler's refusals come in several types
        raise CheckpointError(f"{path}: refused to load ({_refusal_reason(error)})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: checkpoint body is not a mapping")
    return payload


def _refusal_reason(error: Exception) -> str:
    """The one informative line of torch's long weights-only refusal."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported global" in line or "WeightsUnpickler error" in line:
            return line.split(" was not an allowed global")[0][:200]
    return (lines[-1] if lines else type(error).__name__)[:200]


def load_state(path: str | Path, target: Any, state: Any, what: str = "agent state") -> None:
    """``target.load_state_dict(state)`` from the checkpoint ``path``; a state that does not fit
    (another architecture, a damaged field) is one line naming the file."""
    try:
        target.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        lines = str(error).strip().splitlines()
        first_line = (lines[0] if lines else type(error).__name__)[:200]
        raise CheckpointError(f"{path}: {what} does not fit ({first_line})") from None


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_checkpoints(run_dir: str | Path) -> list[Path]:
    """The periodic checkpoints of a run, oldest first."""
    directory = checkpoint_dir(run_dir)
    found = [p for p in directory.glob("step_*.pt") if _STEP_FILE.search(p.name)]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path: str | Path) -> int:
    """The vector step a periodic checkpoint was written at, from its name."""
    return int(_STEP_FILE.search(Path(path).name).group(1))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: str | Path) -> Path:
    found = step_checkpoints(run_dir)
    if not found:
        raise CheckpointError(f"{run_dir}: no checkpoint found under {checkpoint_dir(run_dir)}")
    return found[-1]


class CheckpointKeeper:
    """Keeps the last K periodic checkpoints and the best one by mean success rate."""

    def __init__(self, run_dir: str | Path, keep: int) -> None:
        self.directory = checkpoint_dir(run_dir)
        self.keep = keep
        self.best_success = float("-inf")

    def save(self, step: int, payload: dict[str, Any], mean_success: float | None) -> Path:
        path = self.directory / f"step_{step:010d}.pt"
        save_checkpoint(path, payload)
        if mean_success is not None and mean_success > self.best_success:
            self.best_success = mean_success
            save_checkpoint(self.directory / "best.pt", payload)
        for old in step_checkpoints(self.directory.parent)[: -self.keep]:
            old.unlink(missing_ok=True)
        return path


@dataclass(frozen=True)
class TrainingCheckpoint:
    """What a training checkpoint holds: the one owner of its layout. The trainer writes it, and
    resume, ``mtrl eval`` and ``mtrl export`` read it through ``from_payload``, so a file that
    lacks a field is refused in one line naming it, never a KeyError deep in a trainer.

    The first six fields are what acting needs; the rest is what an exact resume needs (the
    replay and the env state only where the run checkpoints them).
    """

    config: dict[str, Any]  # config.to_dict of the run's Config
    task_names: list[str]
    obs_dim: int
    action_dim: int
    step: int  # vector-env steps
    agent: dict[str, Any]  # MultiTaskSAC.state_dict()
    updates: int = 0
    update_credit: float = 0.0  # fractional updates owed (updates_per_step < 1)
    rng: dict[str, Any] = field(default_factory=dict)  # torch, numpy, replay generator states
    best_success: float = -math.inf  # the best periodic evaluation so far (best.pt)
    run: dict[str, Any] = field(default_factory=dict)  # run.json's provenance and protocol
    episodes: dict[str, torch.Tensor] = field(default_factory=dict)  # episodes in flight
    replay: dict[str, Any] | None = None  # with checkpoint_replay=true
    env: dict[str, Any] | None = None  # env state and observation, for envs that save them

    REQUIRED = ("config", "task_names", "obs_dim", "action_dim", "step", "agent")
    RESUME = ("update_credit", "rng", "best_success", "episodes")

    def to_payload(self) -> dict[str, Any]:
        """Plain data and tensors (what ``weights_only`` loading accepts); absent parts omitted."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_payload(
        cls, path: str | Path, payload: dict[str, Any], resume: bool = False
    ) -> TrainingCheckpoint:
        """The checkpoint in ``payload`` (from ``load_checkpoint(path)``); ``resume`` also
        requires what continuing the run needs."""
        needed = cls.REQUIRED + (cls.RESUME if resume else ())
        missing = [name for name in needed if name not in payload]
        if missing:
            what = "a resumable training checkpoint" if resume else "a training checkpoint"
            raise CheckpointError(f"{path}: not {what} (no {', '.join(missing)})")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in payload.items() if k in known}
        try:
            if not isinstance(values["config"], dict) or not isinstance(values["agent"], dict):
                raise TypeError("config and agent must be mappings")
            values["task_names"] = [str(name) for name in values["task_names"]]
            for name in ("obs_dim", "action_dim", "step"):
                values[name] = int(values[name])
            return cls(**values)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{path}: not a training checkpoint ({error})") from None
