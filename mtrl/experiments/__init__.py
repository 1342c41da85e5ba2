"""Experiments made of many runs: hyper-parameter search (``mtrl tune``)."""
