"""`pip install .` ships one import package, `mtrl`; nothing named `agents` or `envs` at top level."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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
