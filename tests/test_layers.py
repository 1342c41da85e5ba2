"""Imports point down the layers (docs/development.md, "Code layout"), checked on the source with ast.

A lower module that needs something of a higher one takes it as an argument, or the thing moves
down; an upward import is how a small package turns into a knot nobody can read in order.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mtrl"

# Bottom up; a module may import its own layer and the ones below it. Keys are the first name
# under mtrl ("agents" for mtrl.agents.sac); report_* are report's parts, lock and policy_eval sit
# with run and policy, video is a leaf writer that policy evaluation uses; presets only finds files,
# plugins feeds the registries, callbacks are what the trainer calls, api sits beside the CLI's peers;
# training is the session every trainer runs inside (mtrl.training.session).
LAYERS = [
    {"errors", "limits", "user_yaml", "specs", "presets", "sharing", "extras"},
    {"config", "registry", "plugins"},
    {"envs", "replay", "gradients", "checkpoint", "logging", "tracking", "stats", "video"},
    {"agents"},
    {"run", "training", "evaluation", "policy", "policy_eval", "lock", "callbacks"},
    {"trainer", "baselines"},
    {"sweep", "report", "report_tables", "report_figures", "bench", "export", "api"},
    {"cli", "__init__", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _layer_name(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _submodule_or_package(name: str) -> str:
    is_module = (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").exists()
    return f"mtrl.{name}" if is_module else "mtrl"


def _edges() -> set[tuple[str, str, str]]:
    """(importing file, its layer name, imported layer name) for every import of mtrl."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        me = _layer_name(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "mtrl":  # from mtrl import stats; __version__ is the package's
                    targets = [_submodule_or_package(alias.name) for alias in node.names]
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
