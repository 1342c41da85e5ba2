"""Gradient methods and networks from other installed packages, used by name like ours.

A package declares them as entry points, and every process finds them: ``mtrl train``, a sweep's
fresh processes, ``mtrl eval`` of a checkpoint. The YAML still names a key, never an import path::

    [project.entry-points."mtrl.gradients"]
    my_method = "my_package.methods:MyMethod"     # a mtrl.GradientMethod subclass
    [project.entry-points."mtrl.networks"]
    my_body = "my_package.bodies:MyBody"          # body(obs_dim, out_dim, num_tasks, hidden_sizes)

Built-in names win over a plugin of the same name (a one-line warning says so). A plugin that
fails to import, or is not the right kind of class, is a one-line warning when the plugins are
loaded and an error only where a config names it, so a broken package blocks no command that does
not use it. Which distribution gave each plugin is part of a run's provenance, so a checkpoint that
needs one that is not installed is refused naming it.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from mtrl.errors import ConfigError, warn

GROUPS = ("mtrl.gradients", "mtrl.networks")
_loaded: dict[str, dict[str, str]] = {}  # group -> plugin name -> "dist version (module:attr)"
_broken: dict[str, dict[str, str]] = {}  # group -> plugin name -> why it cannot be used


def load(group: str, registry: dict[str, Any], base: type) -> None:
    """Adds the group's entry points to ``registry`` (once per process). A plugin that fails to
    import, or is not a ``base``, and one with a built-in's name are each a one-line warning on
    stderr naming it and its distribution; the first kind is remembered for ``require``."""
    if group in _loaded:
        return
    _loaded[group], _broken[group] = {}, {}
    for entry in metadata.entry_points(group=group):
        dist = entry.dist
        origin = f"{dist.name} {dist.version}" if dist is not None else "?"
        where = f"plugin '{entry.name}' ({entry.value}, from {origin})"
        if entry.name in registry:
            warn(f"{where} has the name of a built-in {group} entry; the built-in is used")
            continue
        try:
            loaded = entry.load()
        except Exception as error:  # a user's package: any import failure is one line
            problem = f"{where} failed to load: {type(error).__name__}: {error}"
        else:
            usable = isinstance(loaded, type) and issubclass(loaded, base)
            problem = (
                None if usable else f"{where} is not a {base.__module__}.{base.__name__} subclass"
            )
        if problem is not None:
            _broken[group][entry.name] = problem
            warn(f"{problem}; it is unusable until fixed")
            continue
        registry[entry.name] = loaded
        _loaded[group][entry.name] = f"{origin} ({entry.value})"


def require(group: str, name: str, key: str | None = None) -> None:
    """Raises, where ``name`` is used, the ConfigError of a plugin of that name that could not be
    loaded (``key``: the config key that names it, for the message)."""
    problem = _broken.get(group, {}).get(name)
    if problem is not None:
        raise ConfigError(f"{key}: {problem}" if key else problem)


def loaded() -> dict[str, dict[str, str]]:
    """The plugins this process has loaded, per group (a run's provenance)."""
    return {group: dict(names) for group, names in _loaded.items() if names}
