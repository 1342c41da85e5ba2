"""Evaluation: the protocol that scores a policy, loading a trained policy, and exporting or filming it."""
