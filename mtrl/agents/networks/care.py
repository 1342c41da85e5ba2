"""CARE (Sodhani et al., ICML 2021, "Multi-Task Reinforcement Learning with Context-based
Representations"): a mixture of state encoders, attended by a task context.

A context encoder turns task tau's metadata into a context z_tau; ``experts`` encoder MLPs each map
the state to a representation; attention weights softmax(a(z_tau) / temperature) over the encoders
mix them; the actor or critic MLP (hidden_sizes) reads the mixture concatenated with z_tau. The
sizes (context 50 wide, encoder and context MLPs 2 x 50, temperature 1) are those of
rainx0r/mtrl's ``CAREConfig``.

The paper's metadata is a pretrained language model's embedding of each task's description,
which mtrl cannot ship. Two sources of it here:

- by default, a learned embedding per task (a [T, context_dim] table, task-specific): the variant
  WITHOUT metadata, as rainx0r/mtrl runs it. It is not the paper's CARE.
- ``context=PATH``: a file of one vector per task name, the paper's variant with whatever
  embedding the user computed. JSON ``{"reach-v3": [0.1, ...], ...}`` or NumPy ``.npz`` (one 1-D
  array per task name); every vector of one length, finite; names of tasks not trained are
  ignored. The file is read when a run starts; its vectors are kept in the checkpoint, and loading
  a policy or resuming uses those (``checkpoint_vectors``), so the file may be gone by then. A
  file that cannot be read or holds a bad vector, or lacks a task of the run, or (at a resume)
  still exists but holds other vectors, is a one-line ConfigError.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtrl.agents.networks.layers import mlp, positive, task_index
from mtrl.errors import ConfigError
from mtrl.specs import parse_spec

# While a checkpoint is loaded (``checkpoint_vectors``): context file path -> (the vectors the
# checkpoint holds, whether the file must still agree with them).
_SAVED: ContextVar[dict[str, tuple[dict[str, list[float]], bool]] | None] = ContextVar(
    "care_saved_vectors", default=None
)


def context_files(agent: Any) -> dict[str, str]:
    """{"actor"/"critic": context file} of an AgentConfig's CARE bodies that read one."""
    files = {}
    for key in ("actor", "critic"):
        try:
            name, options = parse_spec(getattr(agent, key))
        except ValueError:  # the registry's check says what is wrong with it
            continue
        if name == "care" and options.get("context") is not None:
            files[key] = str(options["context"])
    return files


@contextmanager
def checkpoint_vectors(
    agent: Any, agent_state: Any, task_names: list[str], resume: bool = False
) -> Iterator[None]:
    """Inside it, the CARE bodies of ``agent`` (an AgentConfig) take their context vectors from
    the checkpoint's networks (``agent_state``, the task order ``task_names``) instead of the
    file, which a loaded policy therefore does not need. With ``resume``, a file that still
    exists must hold those vectors for the run's tasks (a one-line ConfigError otherwise: training
    on would silently keep the old ones)."""
    saved = dict(_SAVED.get() or {})
    for key, path in context_files(agent).items():
        state = agent_state.get(key) if isinstance(agent_state, dict) else None
        tables = [v for k, v in (state or {}).items() if k.split(".")[-1] == "metadata"]
        if tables and len(tables[0]) == len(task_names):
            rows = tables[0].tolist()
            saved[path] = ({name: rows[i] for i, name in enumerate(task_names)}, resume)
    token = _SAVED.set(saved)
    try:
        yield
    finally:
        _SAVED.reset(token)


def context_vectors(path: str | Path) -> dict[str, list[float]]:
    """The vectors a CARE body reads: the checkpoint's while one is loaded, else the file's."""
    saved = _SAVED.get() or {}
    if str(path) not in saved:
        return read_context_file(path)
    vectors, must_agree = saved[str(path)]
    if must_agree and Path(path).exists():
        now = read_context_file(path)
        # Compared as the float32 they are stored as, in numpy: the config check builds the body
        # on the meta device, where torch cannot compare values.
        same = all(
            name in now and np.array_equal(np.float32(now[name]), np.float32(vector))
            for name, vector in vectors.items()
        )
        if not same:
            raise ConfigError(
                f"care: the vectors of context file {path} differ from the run's checkpoint; "
                "restore the file, or move it away to resume with the checkpoint's vectors"
            )
    return vectors


def read_context_file(path: str | Path) -> dict[str, list[float]]:
    """{task name: vector} from a JSON or .npz context file: all vectors one length, finite, or a
    one-line ConfigError naming the file."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                raw = {name: arrays[name].tolist() for name in arrays.files}
        else:
            raw = json.loads(path.read_text())
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"care: cannot read context file {path}: {reason}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"care: context file {path} must map task names to vectors")
    vectors: dict[str, list[float]] = {}
    for name, vector in raw.items():
        if (
            not isinstance(vector, list)
            or not vector
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector)
        ):
            raise ConfigError(
                f"care: context file {path}: {name!r} must be a non-empty list of numbers"
            )
        if not all(math.isfinite(v) for v in vector):
            raise ConfigError(f"care: context file {path}: {name!r} has a NaN or infinite value")
        vectors[str(name)] = [float(v) for v in vector]
    first, *others = vectors
    odd = next((name for name in others if len(vectors[name]) != len(vectors[first])), None)
    if odd is not None:
        raise ConfigError(
            f"care: context file {path}: {odd!r} has {len(vectors[odd])} values, "
            f"{first!r} has {len(vectors[first])}; every vector must have one length"
        )
    return vectors


class CAREBody(nn.Module):
    """Context encoder, ``experts`` state encoders mixed by the context's attention, and an MLP
    on [mixture, context]; the context from a learned per-task embedding (default: the variant
    without metadata) or from the vectors of ``context=PATH``."""

    task_specific = ("task_embedding",)

    def __init__(
        self,
        obs_dim: int,
        out_dim: int,
        num_tasks: int,
        hidden_sizes: tuple[int, ...],
        experts: int = 6,
        context: str | None = None,
        context_dim: int = 50,
        encoder_width: int = 50,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        positive("care", experts=experts, context_dim=context_dim, encoder_width=encoder_width)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise ValueError(f"care: temperature must be a positive number, got {temperature!r}")
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"care: temperature must be a positive number, got {temperature!r}")
        self.num_tasks, self.temperature = num_tasks, float(temperature)
        self.context_file, self.vectors = None, None
        if context is None:
            self.task_embedding = nn.Parameter(torch.randn(num_tasks, context_dim))
            metadata_dim = context_dim
        else:
            self.context_file = str(context)
            self.vectors = context_vectors(context)
            metadata_dim = len(next(iter(self.vectors.values())))
            # Filled in task order by ``bind_task_names``; a state dict (a checkpoint) fills it too.
            self.register_buffer("metadata", torch.full((num_tasks, metadata_dim), math.nan))
            self.register_load_state_dict_post_hook(lambda module, _: module._mark_bound())
            self.task_embedding = None
        self.bound = context is None
        encoder = (encoder_width, encoder_width)
        self.context_encoder = mlp(metadata_dim, encoder, context_dim)
        self.attention_net = mlp(context_dim, encoder, experts)
        self.encoders = nn.ModuleList(
            mlp(obs_dim - num_tasks, encoder, context_dim) for _ in range(experts)
        )
        self.torso = mlp(2 * context_dim, hidden_sizes, out_dim)

    def _mark_bound(self) -> None:
        self.bound = True

    def bind_task_names(self, task_names: list[str]) -> None:
        """Puts the context file's vector of each task in its one-hot position; a task the file
        lacks is a one-line ConfigError. Nothing to do for the learned embedding."""
        if self.vectors is None:
            return
        missing = [name for name in task_names if name not in self.vectors]
        if missing:
            raise ConfigError(
                f"care: context file {self.context_file} has no vector for task "
                f"{missing[0]!r}{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}"
            )
        if len(task_names) != self.num_tasks:
            raise ValueError(f"care: {len(task_names)} task names for {self.num_tasks} tasks")
        table = torch.tensor([self.vectors[name] for name in task_names])
        with torch.no_grad():
            self.metadata.copy_(table)
        self.bound = True

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """Each group's context z_tau: x [G, B, obs] -> [G, 1, context_dim] (one task's
        [context_dim] in the per-task pass)."""
        if not self.bound:
            raise RuntimeError("care: bind_task_names was not called for the context file")
        if self.task_embedding is not None and self.task_embedding.dim() == 1:
            return self.context_encoder(self.task_embedding)
        task = task_index(x, self.num_tasks)
        table = self.metadata if self.task_embedding is None else self.task_embedding
        return self.context_encoder(table[task]).unsqueeze(1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's weights over the encoders, [G, B, experts], summing to 1."""
        logits = self.attention_net(self.context(x)) / self.temperature
        return torch.softmax(logits, -1).expand(*x.shape[:-1], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.context(x)
        weights = torch.softmax(self.attention_net(context) / self.temperature, -1)
        state = x[..., : -self.num_tasks]
        encoded = torch.stack([encoder(state) for encoder in self.encoders], -2)  # [G, B, k, d]
        mixture = (weights.unsqueeze(-1) * encoded).sum(-2)  # [G, B, d]
        context = context.expand_as(mixture)
        return self.torso(torch.cat([mixture, context], -1))


def bind_task_names(module: nn.Module, task_names: list[str]) -> None:
    """Every CARE body in ``module`` (actor, ensemble, target) gets the run's task order."""
    for sub in module.modules():
        if isinstance(sub, CAREBody):
            sub.bind_task_names(task_names)
