"""State the size of the task gradients, kept across updates block by block (one [T, P_n] tensor per
shared parameter): ExcessMTL's sums of squared gradients, MoCo's and DB-MTL's tracked gradients.
These methods read the gradients' coordinates or step along past gradients, which no T x T Gram
matrix describes, so they work on the engine's blocks (``combine_blocks``), never on a [T, P] matrix.
Kept in at least float32 (bf16 sums of squares lose the small terms)."""

from __future__ import annotations

import torch


def state_dtype(block: torch.Tensor) -> torch.dtype:
    return torch.promote_types(block.dtype, torch.float32)


def on_blocks(
    state: list[torch.Tensor] | None, blocks: list[torch.Tensor], name: str
) -> list[torch.Tensor] | None:
    """``state`` on the blocks' device (a checkpoint loads it on the CPU), None if none is kept yet;
    a ValueError if the shared parameters are not those the state was made for."""
    if state is None:
        return None
    if [tuple(s.shape) for s in state] != [tuple(b.shape) for b in blocks]:
        raise ValueError(f"{name}: the shared parameters differ from those its state was made for")
    return [s.to(device=b.device, dtype=state_dtype(b)) for s, b in zip(state, blocks, strict=True)]


def cloned(state: list[torch.Tensor] | None) -> list[torch.Tensor] | None:
    """A copy of per-block state for a state dict (and back), None as None."""
    return None if state is None else [s.clone() for s in state]
