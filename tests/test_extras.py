"""A run that needs an optional dependency that is not installed stops before it starts, in one
line naming the extra to install."""

from __future__ import annotations

import sys

import pytest

from mtrl.config import build_config
from mtrl.errors import ConfigError
from mtrl.extras import EXTRAS
from mtrl.training.run import check_specs


@pytest.mark.parametrize(
    ("module", "overrides", "needed_by"),
    [
        ("wandb", ["wandb.project=p"], "wandb.project"),
        ("imageio", ["eval_video_every=100"], "eval_video_every"),
        ("stable_baselines3", ["agent.algorithm=independent"], "agent.algorithm=independent"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(monkeypatch, module, overrides, needed_by):
    config = build_config("synthetic", overrides)
    check_specs(config)  # installed here (the dev extra): nothing to say
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ConfigError) as raised:
        check_specs(config)
    message = str(raised.value)
    assert message == (
        f"{needed_by} needs {module}, which is not installed: "
        f"pip install 'mtrl-suite[{EXTRAS[module]}]'"
    )


def test_wandb_disabled_needs_no_wandb(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    check_specs(build_config("synthetic", ["wandb.project=p", "wandb.mode=disabled"]))
