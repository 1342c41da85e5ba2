"""Tests run the per-task gradient pass eagerly: compiling it costs seconds for every agent a test
builds. ``test_sac`` checks, with compiling switched back on, that the compiled pass gives the
eager gradients. Set before torch is imported, so CLI subprocesses inherit it too."""

import os

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # README's command runs the suite on two pytest-xdist workers, one per core: each worker and
    # the CLI subprocesses it starts get one torch thread (two workers of two spinning threads on
    # two cores ran 3.5x slower on an earlier machine), and its own temporary directory, so the training
    # registry (mtrl.training.cores) of one worker's runs never counts the other's.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import tempfile  # noqa: E402

    _worker_tmp = os.path.join(
        tempfile.gettempdir(), f"mtrl-tests-{os.environ['PYTEST_XDIST_WORKER']}"
    )
    os.makedirs(_worker_tmp, exist_ok=True)
    os.environ["TMPDIR"] = _worker_tmp
    tempfile.tempdir = None  # re-read TMPDIR

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_flush_denormal_leaks():
    """A Trainer flushes denormals for its whole process (mtrl.training.run.configure_torch); tests
    share one process, and hypothesis refuses to draw floats once subnormals are flushed, so each
    test leaves the flag as it found it."""
    yield
    import torch

    torch.set_flush_denormal(False)
