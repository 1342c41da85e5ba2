"""Choosing a registered thing by name from a YAML key or a command line, in one place.

``"cagrad:c=0.5"`` names a gradient method and its options in one value, ``"mmoe:experts=4"`` a
network; a misspelt name gets its close matches, an option the constructor does not take is named
with the ones it does. Every registry (gradient methods, networks, config keys, tasks) answers a bad
name the same way because it asks here.
"""

from __future__ import annotations

import difflib
import inspect
import reprlib
from collections.abc import Iterable
from typing import Any

from mtrl.errors import ConfigError
from mtrl.user_yaml import parse_scalar

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxdict = 2, 4, 4
_SHOWN.maxstring = _SHOWN.maxother = 60


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cagrad:c=0.5,rescale=1"`` -> ("cagrad", {"c": 0.5, "rescale": 1}); values are YAML
    scalars, so numbers and booleans arrive typed."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {item!r} of {spec.strip()!r} is not of the form key=value")
        options[key.strip()] = parse_scalar(raw)
    return name.strip(), options


def shown(value: Any) -> str:
    """``repr(value)`` cut short, for echoing a user's value in a one-line error (a nested list
    from a YAML file can be any size)."""
    return _SHOWN.repr(value)


def suggest(
    name: str, choices: Iterable[str], cutoff: float = 0.6, fallback: str | None = None
) -> str:
    """ "did you mean: a, b?" with the close matches of ``name``; else ``fallback``, by default
    "valid: <all choices>"."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=cutoff)
    if close:
        return f"did you mean: {', '.join(close)}?"
    return fallback if fallback is not None else f"valid: {', '.join(choices)}"


def lookup(registry: dict[str, Any], name: str, kind: str) -> Any:
    """``registry[name]``, or a ValueError "unknown <kind> '<name>'; did you mean: ...?"."""
    if name not in registry:
        raise ValueError(f"unknown {kind} '{name}'; {suggest(name, registry)}")
    return registry[name]


def check_options(
    name: str, cls: type, options: dict[str, Any], fixed: Iterable[str], extra: Iterable[str] = ()
) -> None:
    """Refuses options that ``cls.__init__`` does not take (besides the ``fixed`` arguments the
    caller passes itself), naming the ones it does; ``extra`` are options the caller handles."""
    fixed = {"self", *fixed}
    allowed = [*extra, *(p for p in inspect.signature(cls.__init__).parameters if p not in fixed)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise ValueError(f"{name}: unknown option {', '.join(unknown)} (its options: {valid})")


def suggest_suffix(name: str, options: list[str]) -> str:
    """ "; did you mean: ..." (or "; valid: ...") to end a one-line error about ``name``."""
    return "; " + suggest(name, options, cutoff=0.5)


def check_registered(
    key: str, spec: str, registry: Iterable[str], build, unregistered=None
) -> None:
    """A config key's ``name:opt=val`` spec: the name must be in ``registry`` and ``build(spec)``
    (a build that allocates nothing) must accept its options, so a bad name, option or value
    fails before a run starts, on one line that names the key. ``unregistered(name)`` may raise
    a better error than "unknown" for a name not in ``registry`` (a plugin that failed to load)."""
    try:
        name, _ = parse_spec(spec)
    except ValueError as error:
        raise ConfigError(f"{key}: {error}") from None
    registry = sorted(registry)
    if name not in registry and unregistered is not None:
        unregistered(name)
    if name not in registry:
        raise ConfigError(f"{key}: unknown '{name}'{suggest_suffix(name, registry)}")
    try:
        build(spec)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key}: {error}") from None
