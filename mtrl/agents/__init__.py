"""Agents: multi-task SAC and its actor/critic bodies."""
