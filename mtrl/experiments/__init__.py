"""Where experiments run: the cluster backends of ``mtrl sweep``."""
