"""The presets shipped inside the package, found by name from anywhere.

``mt10/mt_sac`` is ``mt10/mt_sac.yaml`` in this folder, so ``mtrl train --config mt10/mt_sac`` works
from a pip-installed mtrl as from a checkout, and a sweep file names its presets the same way. A
path to a YAML file is always taken first, so a user's own presets (and ``base:`` chains between
them and ours) work as files.
"""

from __future__ import annotations

import re
from pathlib import Path

from mtrl.errors import ConfigError
from mtrl.specs import suggest

PRESETS_DIR = Path(__file__).resolve().parent
SWEEPS = "sweeps"  # the folder of sweep files, the rest are run presets


def names(sweeps: bool = False) -> list[str]:
    """Every shipped run preset (or sweep file), as the name that finds it."""
    found = []
    for path in sorted(PRESETS_DIR.rglob("*.yaml")):
        name = path.relative_to(PRESETS_DIR).with_suffix("").as_posix()
        if name.startswith(f"{SWEEPS}/") == sweeps:
            found.append(name)
    return found


def resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """The YAML file a ``--config`` (or a sweep entry's ``preset``) means: an existing file (relative
    to ``relative_to`` where given, else to the working directory), else a shipped preset's name,
    with or without ``.yaml``."""
    given = Path(name_or_path)
    path = relative_to / given if relative_to is not None and not given.is_absolute() else given
    if path.is_file():
        return path
    name = given.as_posix().removesuffix(".yaml")
    shipped = PRESETS_DIR / f"{name}.yaml"
    if not given.is_absolute() and shipped.is_file():
        return shipped
    known = names() + names(sweeps=True)
    hint = suggest(name, known, cutoff=0.5, fallback="`mtrl presets` lists them")
    raise ConfigError(f"config file not found: {path}, nor a preset of that name; {hint}")


def describe(path: Path, width: int = 100) -> str:
    """A preset's first sentence of its leading comment (what it is), else its label."""
    comment, label = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and (comment or not label):
            comment.append(stripped.lstrip("#").strip())
            continue
        if comment:
            break
        if stripped.startswith("label:"):
            label = stripped.removeprefix("label:").strip().strip("'\"")
    # The first sentence: a full stop before a capital ("et al. 2025" and "e.g. x" go on).
    text = re.split(r"(?<!et al)\.\s+(?=[A-Z])", " ".join(comment))[0] if comment else label
    text = text.rstrip(".")
    return text if len(text) <= width else text[: width - 3].rsplit(" ", 1)[0] + "..."
