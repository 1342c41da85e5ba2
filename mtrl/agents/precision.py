"""The arithmetic the networks run in: what ``agent.precision`` means on a device."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively here (agent.precision=auto): CUDA devices that support
    bf16, CPUs with avx512_bf16 or AMX (their bf16 matmuls outrun fp32's: ``mtrl bench`` (a))."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def precision_autocast(precision: str, device: torch.device) -> tuple[str, Callable]:
    """The precision that ``agent.precision`` means on ``device`` ("fp32" or "bf16") and the
    context the networks' forward (and so backward) passes run in; their outputs are cast back to
    fp32 at once."""
    bf16 = precision == "bf16" or (precision == "auto" and bf16_is_fast(device))
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=bf16)
    return ("bf16" if bf16 else "fp32"), autocast
