"""Running a training run: the session that every trainer runs inside (``session``)."""
