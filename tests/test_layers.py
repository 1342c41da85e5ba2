"""Imports point down the layers (docs/development.md, "Code layout"), checked on the source with ast.

A lower module that needs something of a higher one takes it as an argument, or the thing moves
down; an upward import is how a small package turns into a knot nobody can read in order.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mtrl"

# Bottom up; a module may import its own layer and the ones below it. Keys are "room.module" inside
# the rooms (training, evaluation, analysis, experiments) and the first name under mtrl elsewhere
# ("agents" for mtrl.agents.sac). presets only finds files, plugins feeds the registries, video is
# a leaf writer that evaluation uses, callbacks are what the trainer calls; api sits above the tools
# it drives and below the command line.
ROOMS = {"training", "evaluation", "analysis", "experiments"}
LAYERS = [
    {"errors", "limits", "user_yaml", "specs", "presets", "extras"},
    {"config", "plugins"},
    {
        "envs",
        "gradients",
        "training.replay",
        "training.checkpoint",
        "training.logging",
        "training.tracking",
        "training.lock",
        "training.cores",
        "analysis.stats",
        "evaluation.video",
    },
    {"agents"},
    {"evaluation.protocol", "evaluation.policy", "training.run", "training.session", "callbacks"},
    {"training.trainer", "baselines"},
    {
        "evaluation.command",
        "evaluation.export",
        "analysis.report",
        "analysis.tables",
        "analysis.figures",
        "experiments.sweep",
        "experiments.slurm",
        "experiments.bench",
    },
    {"api"},
    {"experiments.tune"},  # trials are runs of the Python API
    {"cli", "__init__", "__main__"},
]
# A room's __init__.py is a docstring only (test_rooms_hold_no_code), so it sits below everything.
RANK = {room: 0 for room in ROOMS} | {
    name: rank for rank, names in enumerate(LAYERS) for name in names
}


def _layer_name(module: str) -> str:
    parts = module.removesuffix(".__init__").split(".")
    if len(parts) == 1:
        return "__init__"
    if parts[1] in ROOMS and len(parts) > 2:  # mtrl.training.run -> training.run
        return f"{parts[1]}.{parts[2]}"
    return parts[1]


def _imported(package: str, name: str) -> str:
    """What ``from package import name`` imports: the submodule if there is one, else the package."""
    folder = PACKAGE.parent.joinpath(*package.split("."))
    is_module = (folder / name).is_dir() or (folder / f"{name}.py").exists()
    return f"{package}.{name}" if is_module else package


def _edges() -> set[tuple[str, str, str]]:
    """(importing file, its layer name, imported layer name) for every import of mtrl."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        me = _layer_name(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "mtrl" or node.module.removeprefix("mtrl.") in ROOMS:
                    # from mtrl.analysis import stats; from mtrl import __version__ is the package's
                    targets = [_imported(node.module, alias.name) for alias in node.names]
                elif node.module.startswith("mtrl."):
                    targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("mtrl.")]
            for target in targets:
                other = _layer_name(target)
                if other != me:
                    edges.add((str(relative), me, other))
    return edges


def test_every_module_is_in_a_layer():
    names = {
        _layer_name(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts))
        for p in PACKAGE.rglob("*.py")
    }
    assert names <= set(RANK), f"modules in no layer: {sorted(names - set(RANK))}"


def test_imports_point_down_the_layers():
    upward = sorted((me, other, path) for path, me, other in _edges() if RANK[other] > RANK[me])
    assert not upward, f"imports that point up a layer: {upward}"


def test_rooms_hold_no_code():
    """A room's __init__.py says what the room is for; its modules are imported by their own names."""
    for room in sorted(ROOMS):
        tree = ast.parse((PACKAGE / room / "__init__.py").read_text())
        assert ast.get_docstring(tree), f"mtrl/{room}/__init__.py has no docstring"
        assert len(tree.body) == 1, f"mtrl/{room}/__init__.py holds more than its docstring"


def test_at_most_twelve_modules_at_the_top():
    """Past a dozen, a newcomer can no longer see the rooms for the files: new modules go in one."""
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 12, f"{len(top)} modules at the top of mtrl/: {top}"
