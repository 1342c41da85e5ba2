"""Training: the run's lifecycle, the trainer's loop, and what a run keeps (replay, checkpoints, logs)."""
