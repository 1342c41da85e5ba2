"""Experiments: many runs at once (sweeps over a grid, on Ray or Slurm; hyper-parameter search)
and the library's own benchmark."""
