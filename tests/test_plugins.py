"""Plugins as a user ships them: an installed distribution's entry points, seen by every process.

The distribution here is a dist-info folder and a module on PYTHONPATH, which is what ``pip
install`` leaves behind; the commands run in fresh processes as a sweep's do.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from mtrl_process import TINY, run_mtrl

from mtrl import plugins
from mtrl.errors import ConfigError

PLUGIN_SOURCE = '''
import torch

from mtrl.agents.networks.mlp import SharedBody
from mtrl.gradients.base import GradientMethod


class LastTaskFirst(GradientMethod):
    """Twice the weight on the last task: a method no registry of mtrl has."""

    def weights(self, gram_matrix, task_losses, context):
        w = torch.ones(self.num_tasks, dtype=torch.float64)
        w[-1] = 2.0
        return w / w.sum()


class PluginBody(SharedBody):
    """The shared MLP under another name, from another package."""


class NotAMethod:
    pass
'''


def install_plugin(root: Path, entry_points: str) -> Path:
    """A distribution 'mtrl-test-plugin 0.3' with ``entry_points`` under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mtrl_test_plugin.py").write_text(PLUGIN_SOURCE)
    info = root / "mtrl_test_plugin-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mtrl-test-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


GOOD = """\
    [mtrl.gradients]
    last_task_first = mtrl_test_plugin:LastTaskFirst
    [mtrl.networks]
    plugin_body = mtrl_test_plugin:PluginBody
"""


def mtrl(*args: str, path: Path | None) -> subprocess.CompletedProcess:
    """The command with ``path`` (where the plugin is installed) as PYTHONPATH, or none."""
    return run_mtrl(*args, env={"PYTHONPATH": None if path is None else str(path)})


def test_a_plugin_trains_evaluates_and_its_absence_is_one_line(tmp_path):
    site = install_plugin(tmp_path / "site", GOOD)
    run_dir = tmp_path / "run"
    trained = mtrl(
        "train",
        "--config",
        "synthetic",
        "agent.critic_grad=last_task_first",
        "agent.critic=plugin_body",
        "agent.actor=plugin_body",
        f"run_dir={run_dir}",
        *TINY,
        path=site,
    )
    assert trained.returncode == 0, trained.stderr
    provenance = json.loads((run_dir / "run.json").read_text())["provenance"]
    assert provenance["plugins"] == {
        "mtrl.gradients": {
            "last_task_first": "mtrl-test-plugin 0.3 (mtrl_test_plugin:LastTaskFirst)"
        },
        "mtrl.networks": {"plugin_body": "mtrl-test-plugin 0.3 (mtrl_test_plugin:PluginBody)"},
    }

    evaluated = mtrl("eval", str(run_dir), "--episodes", "1", path=site)
    assert evaluated.returncode == 0, evaluated.stderr

    # The actor's network is what acting needs: without its plugin, one line naming it.
    missing = mtrl("eval", str(run_dir), "--episodes", "1", path=None)
    assert missing.returncode != 0
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in missing.stderr, missing.stderr
    assert "plugin_body" in lines[0] and "mtrl-test-plugin 0.3" in lines[0], lines[0]


def test_an_unknown_name_lists_the_plugins_beside_the_built_ins(tmp_path):
    site = install_plugin(tmp_path / "site", GOOD)
    shown = mtrl("config", "show", "--config", "synthetic", "agent.critic_grad=last_task_firs",
                 path=site)  # fmt: skip
    assert shown.returncode == 2
    assert "last_task_first" in shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("broken = mtrl_test_plugin_missing:Thing", "failed to load: ModuleNotFoundError"),
        ("broken = mtrl_test_plugin:NotAMethod", "is not a mtrl.gradients.base.GradientMethod"),
    ],
)
def test_a_bad_plugin_is_a_warning_and_an_error_only_where_it_is_used(tmp_path, entry, says):
    site = install_plugin(tmp_path / "site", f"[mtrl.gradients]\n{entry}\n")
    unused = mtrl("config", "show", "--config", "synthetic", path=site)
    assert unused.returncode == 0, unused.stderr
    (warning,) = unused.stderr.strip().splitlines()
    assert warning.startswith("mtrl: warning: plugin 'broken'") and says in warning, warning
    assert "mtrl-test-plugin 0.3" in warning

    used = mtrl("config", "show", "--config", "synthetic", "agent.critic_grad=broken", path=site)
    assert used.returncode == 2 and "Traceback" not in used.stderr, used.stderr
    error = used.stderr.strip().splitlines()[-1]
    assert error.startswith("mtrl: error: agent.critic_grad: plugin 'broken'") and says in error


def test_a_bad_plugin_used_from_python_is_one_config_error_naming_it(tmp_path, monkeypatch, capsys):
    site = install_plugin(tmp_path / "site", "[mtrl.gradients]\nbroken = missing_module:Thing\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_broken", {})
    from mtrl import gradients

    monkeypatch.setattr(gradients, "GRADIENT_METHODS", dict(gradients.GRADIENT_METHODS))
    with pytest.raises(ConfigError) as raised:
        gradients.make("broken", num_tasks=2)
    message = str(raised.value)
    assert "\n" not in message and "failed to load: ModuleNotFoundError" in message
    assert "mtrl-test-plugin 0.3" in message and "broken" not in gradients.GRADIENT_METHODS
    assert capsys.readouterr().err.count("mtrl: warning: plugin 'broken'") == 1


def test_a_built_in_name_wins_over_a_plugin_of_the_same_name_and_says_so(
    tmp_path, monkeypatch, capsys
):
    site = install_plugin(
        tmp_path / "site", "[mtrl.gradients]\npcgrad = mtrl_test_plugin:NotAMethod\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_broken", {})
    from mtrl.gradients import GRADIENT_METHODS
    from mtrl.gradients.base import GradientMethod
    from mtrl.gradients.pcgrad import PCGrad

    registry = dict(GRADIENT_METHODS)
    plugins.load("mtrl.gradients", registry, GradientMethod)
    assert registry["pcgrad"] is PCGrad and plugins.loaded() == {}
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert (
        warning.startswith("mtrl: warning: plugin 'pcgrad'") and "mtrl-test-plugin 0.3" in warning
    )
    assert "built-in" in warning
