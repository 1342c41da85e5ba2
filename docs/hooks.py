"""MkDocs hooks: the reference tables are written from the code at every build, so they cannot go
stale.

A page holds a marker, ``<!-- mtrl:NAME -->`` alone on a line, and ``on_page_markdown`` puts the
table of ``TABLES[NAME]`` in its place: every config key with its default and its documentation
(``mtrl.config.field_docs``, the comments above each field), every registered gradient method and
network (the first sentence of its class's docstring, else of its module's), every shipped preset
and sweep (``mtrl.presets.describe``), and measured outputs from their committed records (the
Quickstart's run, the MT10 ablation's state). An unknown marker fails the build.

The figures under ``benchmarks/results/`` join the site (``on_files``), so that a page links them as
``../benchmarks/results/...``, the path that also works when the page is read on GitHub.
"""

from __future__ import annotations

import html
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"
MARKER = re.compile(r"^<!-- mtrl:([a-z-]+) -->$", re.MULTILINE)


def _cell(text: str) -> str:
    """Text for a Markdown table cell: HTML and pipes escaped outside `code spans`."""
    parts = re.split(r"(`[^`]*`)", " ".join(str(text).split()))
    escaped = [p if p.startswith("`") else html.escape(p, quote=False) for p in parts]
    return "".join(escaped).replace("|", "\\|")


def _code(value: Any) -> str:
    shown = list(value) if isinstance(value, tuple) else value
    return f"`{shown!r}`"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _summary(obj: Any) -> str:
    """The first sentence of an object's own docstring, else of its module's docstring."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not doc:
        doc = sys.modules[obj.__module__].__doc__ or ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    # A full stop before a capital ends it ("et al. 2020" and "e.g. x" go on).
    return re.split(r"(?<!et al)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])", paragraph)[0].rstrip(".")


def config_reference() -> str:
    """One table per section of the config: key, default, documentation (and the choices)."""
    from mtrl.config import CHOICES, field_docs

    sections: dict[str, list[tuple[str, ...]]] = {}
    for key, (default, doc) in field_docs().items():
        section = key.split(".")[0] if "." in key else ""
        choices = CHOICES.get(key)
        if choices:
            doc = f"{doc} One of: {', '.join(_code(c) for c in choices)}."
        sections.setdefault(section, []).append((f"`{key}`", _code(default), _cell(doc)))
    blocks = []
    for section, rows in sorted(sections.items(), key=lambda item: item[0] == ""):
        title = f"`{section}.*`" if section else "The run"
        blocks.append(f"## {title}\n\n" + _table(("key", "default", "what it does"), rows))
    return "\n\n".join(blocks)


def _registry(registry: dict[str, type]) -> str:
    rows = [
        (f"`{name}`", f"`{cls.__module__}.{cls.__name__}`", _cell(_summary(cls)))
        for name, cls in registry.items()
    ]
    return _table(("name", "class", "what it is"), rows)


def gradient_methods() -> str:
    from mtrl.gradients import GRADIENT_METHODS

    return _registry(GRADIENT_METHODS)


def networks() -> str:
    from mtrl.agents.networks import NETWORKS

    return _registry(NETWORKS)


def _presets(sweeps: bool) -> str:
    from mtrl.presets import PRESETS_DIR, describe, names

    rows = [(f"`{name}`", _cell(describe(PRESETS_DIR / f"{name}.yaml", width=240))) for name in
            names(sweeps=sweeps)]  # fmt: skip
    return _table(("name", "what it is"), rows)


def presets() -> str:
    return _presets(sweeps=False)


def sweeps() -> str:
    return _presets(sweeps=True)


def quickstart() -> str:
    """The Quickstart's recorded output and time (``benchmarks/quickstart.py``'s record)."""
    import json

    record = json.loads((REPO / RESULTS / "quickstart" / "record.json").read_text())
    minutes, seconds = divmod(round(record["seconds"]), 60)
    low, high = record["env_steps_per_s"]
    return "\n".join(
        [
            "```",
            record["output"],
            "```",
            "",
            f"Measured on this project's 2-core CPU machine on {record['date']} "
            f"(`python benchmarks/quickstart.py`, {record['beside']} running beside it): "
            f"`{record['command']}` took {minutes} min {seconds} s, at {low}-{high} env steps/s "
            "after the warm-up.",
        ]
    )


def pcgrad_ablation_mt10() -> str:
    """The MT10 ablation's state: ``benchmarks/pcgrad_ablation_mt10.py --report-only``'s summary,
    made from the committed run records."""
    return (REPO / RESULTS / "pcgrad_ablation_mt10" / "summary.md").read_text().strip()


def two_task_mt10() -> str:
    """The two-task view's numbers: ``benchmarks/two_task_mt10.py --report-only``'s summary, made
    from the committed run records."""
    return (REPO / RESULTS / "two_task_mt10" / "summary.md").read_text().strip()


def two_task_mt10_reach_drawer_close() -> str:
    """The second pair's numbers (reach + drawer-close), made the same way as ``two_task_mt10``."""
    folder = REPO / RESULTS / "two_task_mt10_reach_drawer_close"
    return (folder / "summary.md").read_text().strip()


def synthetic_ablation() -> str:
    """The synthetic ablation grid's table, as ``mtrl report`` wrote it into the committed
    results (``benchmarks/results/synthetic_ablation/table.md``)."""
    return (REPO / RESULTS / "synthetic_ablation" / "table.md").read_text().strip()


TABLES: dict[str, Callable[[], str]] = {
    "config": config_reference,
    "gradient-methods": gradient_methods,
    "networks": networks,
    "presets": presets,
    "sweeps": sweeps,
    "quickstart": quickstart,
    "pcgrad-ablation-mt10": pcgrad_ablation_mt10,
    "two-task-mt10": two_task_mt10,
    "two-task-mt10-reach-drawer-close": two_task_mt10_reach_drawer_close,
    "synthetic-ablation": synthetic_ablation,
}


def render(markdown: str) -> str:
    """``markdown`` with every marker replaced by its table and the results' links made site
    links; a marker with no table is a ValueError."""

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise ValueError(f"unknown docs marker mtrl:{name}; known: {', '.join(TABLES)}")
        return TABLES[name]()

    return MARKER.sub(table, markdown).replace(f"](../{RESULTS}/", f"]({RESULTS}/")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    from mkdocs.exceptions import PluginError

    try:
        return render(markdown)
    except ValueError as error:
        raise PluginError(f"{page.file.src_uri}: {error}") from None


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    from mkdocs.structure.files import File

    for path in sorted((REPO / RESULTS).rglob("*.png")):
        relative = path.relative_to(REPO)
        if "runs" not in relative.parts:  # run directories' own files stay out of the site
            files.append(File.generated(config, relative.as_posix(), abs_src_path=str(path)))
    return files
