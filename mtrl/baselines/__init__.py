"""Baselines that are not multi-task SAC: one stable-baselines3 SAC per task (``independent``)."""
