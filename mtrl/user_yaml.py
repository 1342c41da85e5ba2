"""The one way mtrl reads YAML that a user wrote: presets, config files, sweep files, ``key=value``
overrides and the options of a ``name:opt=val`` spec.

Two things of YAML 1.1 are not what a config file means. Aliases (``*name``) share a value, so a
few hundred bytes of nested aliases stand for billions of strings once anything walks them: an
alias is refused where it appears. And a plain scalar written as digits becomes a number (``0755``
is octal 493, ``1:30`` is 90, ``1_000`` is 1000): numbers keep YAML's value but remember the text,
which ``str()`` gives back, so a string field (a label, a W&B project) is what the user wrote.
"""

from __future__ import annotations

from typing import Any

import yaml

from mtrl.errors import ConfigError


class WrittenInt(int):
    """An integer from YAML that ``str()`` writes as its source text."""

    written: str

    def __str__(self) -> str:
        return self.written


class WrittenFloat(float):
    """A float from YAML that ``str()`` writes as its source text."""

    written: str

    def __str__(self) -> str:
        return self.written


class _UserLoader(yaml.SafeLoader):
    """SafeLoader without aliases, whose numbers remember how they were written."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(event.anchor, event.start_mark.line + 1)
        return super().compose_node(parent, index)


class _AliasRefused(Exception):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


def _written(kind: type, construct):
    def constructor(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        value = kind(construct(loader, node))
        value.written = node.value
        return value

    return constructor


_UserLoader.add_constructor(
    "tag:yaml.org,2002:int", _written(WrittenInt, yaml.SafeLoader.construct_yaml_int)
)
_UserLoader.add_constructor(
    "tag:yaml.org,2002:float", _written(WrittenFloat, yaml.SafeLoader.construct_yaml_float)
)


def parse(text: str, source: str) -> Any:
    """The data of a YAML document, or a one-line ConfigError naming ``source`` (a file's path)
    and the line."""
    try:
        return yaml.load(text, Loader=_UserLoader)  # noqa: S506 (a SafeLoader)
    except _AliasRefused as refused:
        raise ConfigError(
            f"{source}: YAML aliases are not accepted (*{refused.anchor}, line {refused.line}); "
            "write the value out"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None


def parse_scalar(raw: str) -> Any:
    """A command-line value (``seed=3``, ``experts=4``) as YAML reads it; text YAML cannot read
    (or that is an alias) stays the text, stripped."""
    try:
        return parse(raw, "value")
    except ConfigError:
        return raw.strip()
