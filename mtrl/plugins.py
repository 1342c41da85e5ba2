"""Gradient methods and networks from other installed packages, used by name like ours.

A package declares them as entry points, and every process finds them: ``mtrl train``, a sweep's
fresh processes, ``mtrl eval`` of a checkpoint. The YAML still names a key, never an import path::

    [project.entry-points."mtrl.gradients"]
    my_method = "my_package.methods:MyMethod"     # a mtrl.GradientMethod subclass
    [project.entry-points."mtrl.networks"]
    my_body = "my_package.bodies:MyBody"          # body(obs_dim, out_dim, num_tasks, hidden_sizes)

Built-in names win over a plugin of the same name. Which distribution gave each plugin is part of a
run's provenance, so a checkpoint that needs one that is not installed is refused naming it.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from mtrl.errors import ConfigError

GROUPS = ("mtrl.gradients", "mtrl.networks")
_loaded: dict[str, dict[str, str]] = {}  # group -> plugin name -> "dist version (module:attr)"


def load(group: str, registry: dict[str, Any], base: type) -> None:
    """Adds the group's entry points to ``registry`` (once per process); a plugin that fails to
    import, or is not a ``base``, is one ConfigError line naming it and its distribution."""
    if group in _loaded:
        return
    _loaded[group] = {}
    for entry in metadata.entry_points(group=group):
        if entry.name in registry:
            continue
        dist = entry.dist
        origin = f"{dist.name} {dist.version}" if dist is not None else "?"
        where = f"plugin '{entry.name}' ({entry.value}, from {origin})"
        try:
            loaded = entry.load()
        except Exception as error:  # a user's package: any import failure is one line
            raise ConfigError(f"{where} failed to load: {type(error).__name__}: {error}") from None
        if not (isinstance(loaded, type) and issubclass(loaded, base)):
            raise ConfigError(f"{where} is not a {base.__module__}.{base.__name__} subclass")
        registry[entry.name] = loaded
        _loaded[group][entry.name] = f"{origin} ({entry.value})"


def loaded() -> dict[str, dict[str, str]]:
    """The plugins this process has loaded, per group (a run's provenance)."""
    return {group: dict(names) for group, names in _loaded.items() if names}
