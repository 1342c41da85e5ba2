"""The docs: the site builds with warnings as errors and its generated references hold every config
key, method, network and preset; README stays short, every command in its shell blocks is one that
parses and whose config builds (checked in-process, nothing is trained), and its links resolve."""

from __future__ import annotations

import ast
import html
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from mtrl.config import apply_overrides, field_docs, validate
from mtrl.presets import names

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 300


def load_hooks():
    spec = importlib.util.spec_from_file_location("mtrl_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-4000:]
    return site_dir


def page(site: Path, name: str) -> str:
    return html.unescape((site / name / "index.html").read_text())


def test_the_site_builds_strictly_and_its_config_reference_holds_every_key(site):
    configuration = page(site, "configuration")
    raw = (site / "configuration" / "index.html").read_text()
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", raw)).split())
    for key, (_, doc) in field_docs().items():
        assert f"<code>{key}</code>" in configuration, key
        assert " ".join(doc.replace("`", "").split()[:8]) in text, key  # its documentation
    assert "One of: <code>'mse'</code>, <code>'hl_gauss'</code>" in configuration
    assert "<!-- mtrl:" not in configuration


def test_the_generated_lists_name_every_method_network_and_preset(site):
    from mtrl.agents.networks import NETWORKS
    from mtrl.gradients import GRADIENT_METHODS

    for name_, registry in (("gradient-methods", GRADIENT_METHODS), ("architectures", NETWORKS)):
        text = page(site, name_)
        for key, cls in registry.items():
            assert f"<code>{key}</code>" in text and f"{cls.__module__}.{cls.__name__}" in text
    training = page(site, "training")
    for preset in names() + names(sweeps=True):
        assert f"<code>{preset}</code>" in training, preset
    api = page(site, "api")
    for name_ in ("train", "load_policy", "evaluate", "predict", "on_eval", "weights"):
        assert f"{name_}" in api
    assert "GymnasiumTasks" in api and "vector_env" in api


def test_the_hooks_escape_cells_and_refuse_an_unknown_marker():
    hooks = load_hooks()
    assert hooks._cell("a | b <T> `x | <y>`") == "a \\| b &lt;T&gt; `x \\| <y>`"
    from mtrl.gradients.mgda import MGDA
    from mtrl.gradients.pcgrad import PCGrad

    assert hooks._summary(PCGrad).startswith("Alg. 1 of Yu et al. (2020)")  # its own docstring
    assert hooks._summary(MGDA).startswith("MGDA (Désidéri 2012")  # else its module's
    with pytest.raises(ValueError, match="unknown docs marker mtrl:nope"):
        hooks.render("text\n<!-- mtrl:nope -->\n")
    shown = hooks.render("![f](../benchmarks/results/x/curve.png)\n<!-- mtrl:networks -->\n")
    assert shown.startswith("![f](benchmarks/results/x/curve.png)") and "`bronet`" in shown


# README


def shell_commands(text: str) -> list[list[str]]:
    """Every command of the ```bash blocks, as words; `a && b` is two commands."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            assert not re.search(r"<[\w -]+>", line), f"a placeholder in a shell block: {line}"
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1 :]
    return commands


def test_readme_is_short_and_keeps_ci_test_command():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    ci_command = (
        'pip install torch==2.13.0 && pip install -e ".[dev]" && '
        'python -m pytest -q -m "not slow" -n 2'
    )
    assert ci_command in text and ci_command in (REPO / ".ci" / "run").read_text()
    assert "pip install torch==2.13.0 && pip install -e . && mtrl train --config quickstart" in text


def _under(path: str, produced: set[Path]) -> bool:
    return any(Path(path) == p or p in Path(path).parents for p in produced)


def check_mtrl(argv: list[str], runs: dict, produced: set[Path]) -> None:
    """Parses as `mtrl` would; train and config show build and check their config; sweeps load
    (every run's config checked); eval, export and report read what an earlier command made."""
    from mtrl.cli import build_parser
    from mtrl.experiments.sweep import load_sweep
    from mtrl.training.run import build_run_config, check_specs

    try:
        args, extra = build_parser().parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"mtrl {shlex.join(argv)}: the parser refuses it")
    assert not extra or args.command == "bench", f"mtrl {shlex.join(argv)}: unrecognized {extra}"
    if args.command == "train" and args.resume:
        assert args.resume in runs, f"--resume {args.resume}: no earlier command makes that run"
        check_specs(validate(apply_overrides(runs[args.resume], args.overrides)))
    elif args.command in ("train", "config"):
        config = build_run_config(args.config, args.overrides)
        if config.run_dir:
            runs[config.run_dir] = config
            produced.add(Path(config.run_dir))
    elif args.command == "sweep":
        sweep = load_sweep(args.sweep, seeds=args.seeds, out=args.out)
        root = sweep.runs[0].run_dir.parent.parent
        produced.add(root.relative_to(Path.cwd().resolve()))
    elif args.command in ("eval", "export"):
        assert _under(args.checkpoint, produced), f"{args.checkpoint}: no earlier command makes it"
    elif args.command == "report":
        for run_dir in args.run_dirs:
            assert _under(run_dir, produced), f"{run_dir}: no earlier command makes it"


def check_pip(argv: list[str]) -> None:
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert argv[:2] == ["pip", "install"], argv
    for word in argv[2:]:
        wanted = re.fullmatch(r"\.\[([\w,-]+)\]", word)
        if wanted:
            missing = set(wanted.group(1).split(",")) - set(extras)
            assert not missing, f"pip install {word}: no extra {missing}"


def test_every_readme_command_parses_and_builds_its_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as a user would, outside the checkout
    commands = shell_commands(README.read_text())
    runs: dict = {}
    produced: set[Path] = set()
    seen = set()
    for argv in commands:
        program = argv[0]
        seen.add(program if program != "mtrl" else f"mtrl {argv[1]}")
        if program == "mtrl":
            check_mtrl(argv[1:], runs, produced)
        elif program == "pip":
            check_pip(argv)
        elif program == "python" and argv[1] == "-m":
            assert importlib.util.find_spec(argv[2]) is not None, argv
        elif program == "python":
            assert (REPO / argv[1]).is_file(), argv
        elif program == "mkdocs":
            assert argv[1] in ("serve", "build") and importlib.util.find_spec("mkdocs"), argv
        else:
            pytest.fail(f"README runs {program}, which this test does not know how to check")
    assert {"mtrl train", "mtrl eval", "mtrl sweep", "mtrl report", "pip"} <= seen


QUICK = ("presets", "config")  # commands that only read: run as written, in a second or two


def test_readmes_quick_commands_run_as_written(tmp_path):
    quick = [a for a in shell_commands(README.read_text()) if a[0] == "mtrl" and a[1] in QUICK]
    assert len(quick) >= 2, quick
    for argv in quick:
        done = subprocess.run(
            [sys.executable, "-m", "mtrl", *argv[1:]], capture_output=True, text=True, cwd=tmp_path
        )
        assert done.returncode == 0 and done.stdout.strip(), (argv, done.stderr)


def _headings(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, as MkDocs and GitHub make them (where the two
    differ, a link works in only one of them, so such an anchor is left out)."""
    anchors, fence = set(), False
    for line in path.read_text().splitlines():
        fence ^= line.lstrip().startswith("```")
        heading = re.match(r"#{1,6} (.*)", line)
        if heading and not fence:
            text = heading.group(1).replace("`", "")
            github = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            if slugify(text, "-") == github:
                anchors.add(github)
    return anchors


def test_every_relative_link_in_readme_and_the_docs_resolves():
    for source in [README, *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", source.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (source.parent / path) if path else source
            assert resolved.exists(), f"{source.name}: {target} does not exist"
            if anchor and resolved.suffix == ".md" and "<!-- mtrl:" not in resolved.read_text():
                assert anchor in _headings(resolved), f"{source.name}: no heading #{anchor}"


def test_the_code_layout_table_places_every_module_in_its_layer():
    """docs/development.md's table, row by row, against tests/test_layers.py's LAYERS."""
    source = (REPO / "tests" / "test_layers.py").read_text()
    assignment = next(
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "LAYERS"
    )
    layers = ast.literal_eval(assignment.value)
    text = (DOCS / "development.md").read_text().split("## Code layout")[1]
    rows = re.findall(r"^\| (?!layer |---)[^|]+ \| (.*) \|$", text, re.M)
    assert len(rows) == len(layers), rows
    package = REPO / "mtrl"
    for row, layer in zip(rows, layers, strict=True):
        for module in sorted(layer):
            path = module.replace(".", "/")  # training.run is training/run.py
            if (package / f"{path}.py").is_file():
                assert f"`{path}.py`" in row, f"{path}.py is not in its layer's row"
            elif (package / path).is_dir():
                assert f"`{path}/" in row, f"{path}/ is not in its layer's row"


# A date, or a measured time, rate or ratio: what a lab note holds and a docstring should not.
LAB_NOTE = re.compile(
    r"\b20\d\d-\d\d-\d\d\b|\b\d[\d,.]*\s?(?:ms|GFLOP/s|(?:env |task )?steps/s)\b|\b\d+\.\d+x\b"
    r"|\b\d+% (?:off|faster|slower)\b"
)


def library_prose(path: Path) -> list[tuple[int, str]]:
    """(line, text) of a module's comments, docstrings and argparse help texts."""
    import io
    import tokenize

    source = path.read_text()
    prose = [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                prose.append((body[0].lineno, body[0].value.value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            prose += [
                (c.lineno, c.value) for c in ast.walk(node.value) if isinstance(c, ast.Constant)
            ]
    return prose


def test_library_docstrings_and_help_texts_carry_no_lab_notes():
    """Dates and measured numbers age in the code; docs/benchmarks.md holds them beside their
    commands, and the docstring says why the code does what it does."""
    notes = [
        f"{path.relative_to(REPO)}:{line}: {match.group()}"
        for path in sorted((REPO / "mtrl").rglob("*.py"))
        for line, text in library_prose(path)
        for match in LAB_NOTE.finditer(str(text))
    ]
    assert not notes, notes
