"""Experiments: many runs at once (sweeps over a grid) and the library's own benchmark."""
