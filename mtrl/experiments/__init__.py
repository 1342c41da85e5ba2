"""Experiments: many runs at once (sweeps over a grid, hyper-parameter search) and the
library's own benchmark."""
