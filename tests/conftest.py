"""Tests run the per-task gradient pass eagerly: compiling it costs seconds for every agent a test
builds. ``test_sac`` checks, with compiling switched back on, that the compiled pass gives the
eager gradients. Set before torch is imported, so CLI subprocesses inherit it too."""

import os

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")
