"""`pip install .` ships one import package, `mtrl`, with its presets, licence and version; nothing
named `agents` or `envs` at top level; the presets are found by name from outside a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_holds_only_the_mtrl_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mtrl_suite-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"mtrl"}
    assert "mtrl/py.typed" in names
    assert "mtrl/agents/sac.py" in names and "mtrl/envs/metaworld.py" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "mtrl = mtrl.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    presets = {p.relative_to(REPO).as_posix() for p in (REPO / "mtrl" / "presets").rglob("*.yaml")}
    assert len(presets) > 50 and presets <= set(names)  # every preset and sweep, subfolders too
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def run_mtrl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-I", "-m", "mtrl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_presets_are_found_by_name_outside_the_checkout(tmp_path):
    from mtrl.presets import PRESETS_DIR, names

    listed = run_mtrl("presets", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in names() + names(sweeps=True):
        assert f"  {name} " in listed.stdout
    assert {
        p.relative_to(PRESETS_DIR).with_suffix("").as_posix() for p in PRESETS_DIR.rglob("*.yaml")
    } == set(names() + names(sweeps=True))
    shown = run_mtrl("config", "show", "--config", "mt10/brc", "seed=7", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    config = yaml.safe_load(shown.stdout)
    assert config["seed"] == 7 and config["agent"]["critic_loss"] == "categorical"
    assert config["agent"]["critic"].startswith("bronet")  # the preset's own value, through base:
    wrong = run_mtrl("config", "show", "--config", "mt10/mt_sca", cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "mt10/mt_sac" in wrong.stderr  # the close match


def test_a_users_file_beats_a_shipped_name_and_bases_on_a_shipped_preset(tmp_path):
    from mtrl.config import build_config
    from mtrl.experiments.sweep import load_sweep
    from mtrl.presets import PRESETS_DIR

    (tmp_path / "synthetic.yaml").write_text(f"base: {PRESETS_DIR / 'synthetic.yaml'}\nseed: 11\n")
    assert build_config(tmp_path / "synthetic.yaml").seed == 11
    assert build_config("synthetic").seed == 0
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("runs:\n  - preset: synthetic\n  - preset: synthetic.yaml\n    label: mine\n")
    runs = load_sweep(sweep, out=tmp_path / "runs").runs
    assert [run.preset for run in runs] == [
        PRESETS_DIR / "synthetic.yaml",
        tmp_path / "synthetic.yaml",
    ]
    assert load_sweep("sweeps/synthetic_ablation", out=tmp_path / "ablation").runs


def test_version_and_help_list_every_config_key(tmp_path):
    from mtrl import __version__
    from mtrl.config import field_docs

    assert __version__ == metadata.version("mtrl-suite")
    version = run_mtrl("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"mtrl {__version__}"
    help_text = run_mtrl("train", "--help", cwd=tmp_path).stdout
    docs = field_docs()
    assert all(doc for _, doc in docs.values())  # every field has its comment
    for key in docs:
        assert f"  {key} = " in help_text
    assert "agent.critic_loss = 'mse'" in help_text and "C51" in help_text


def test_agents_and_envs_are_importable_only_under_mtrl(tmp_path):
    """In an isolated interpreter started elsewhere, as a user's script would be."""
    probe = (
        "import importlib.util as u; "
        "print([u.find_spec(n) is None for n in ('agents', 'envs')], "
        "[u.find_spec(n) is not None for n in ('mtrl.agents', 'mtrl.envs')])"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[True, True] [True, True]"
