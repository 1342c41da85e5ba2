"""Tests run the per-task gradient pass eagerly: compiling it costs seconds for every agent a test
builds. ``test_sac`` checks, with compiling switched back on, that the compiled pass gives the
eager gradients. Set before torch is imported, so CLI subprocesses inherit it too."""

import os

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_flush_denormal_leaks():
    """A Trainer flushes denormals for its whole process (mtrl.run.configure_torch); tests
    share one process, and hypothesis refuses to draw floats once subnormals are flushed, so each
    test leaves the flag as it found it."""
    yield
    import torch

    torch.set_flush_denormal(False)
