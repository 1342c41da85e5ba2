"""Config: presets, overrides, validation errors that are one line and name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import assert_one_line_error, mtrl

from mtrl.config import (
    AgentConfig,
    Config,
    ConfigError,
    build_config,
    from_dict,
    load_config,
    parse_overrides,
    save_config,
    to_dict,
    validate,
)
from mtrl.training.run import build_run_config

CONFIGS = Path(__file__).resolve().parent.parent / "mtrl" / "presets"


def test_defaults_are_the_published_mt_sac_setup():
    config = build_config()
    assert config.env.name == "MT10"
    assert config.agent.hidden_sizes == (400, 400, 400)
    assert config.agent.batch_size_per_task == 128
    assert config.agent.actor_lr == config.agent.critic_lr == 3e-4
    assert config.agent.tau == 5e-3 and config.agent.gamma == 0.99


def test_preset_then_overrides_in_the_documented_shape():
    config = build_config(
        CONFIGS / "synthetic.yaml",
        ["total_steps=20000", "seed=3", "run_dir=runs/demo", "agent.critic=multihead"],
    )
    assert config.total_steps == 20000 and config.seed == 3
    assert config.run_dir == "runs/demo"
    assert config.agent.critic == "multihead"
    assert config.env.name == "synthetic"  # from the preset
    assert config.agent.hidden_sizes == (64, 64)  # from the preset


def test_override_value_types():
    config = build_config(
        None,
        [
            "agent.hidden_sizes=[32,16]",
            "agent.actor_lr=1e-3",
            "progress=false",
            "total_steps=1_000",
            "env.name=synthetic:3",
        ],
    )
    assert config.agent.hidden_sizes == (32, 16)
    assert config.agent.actor_lr == pytest.approx(1e-3)
    assert config.progress is False
    assert config.total_steps == 1000
    assert config.env.name == "synthetic:3"


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("agent.critc=multihead", "did you mean: agent.critic"),
        ("totl_steps=5", "did you mean: total_steps"),
        ("agent.critic=multihed", "did you mean: multihead"),
        ("agent.critic_grad=pcgrd", "agent.critic_grad"),
        ("total_steps=abc", "total_steps: expected an integer"),
        ("total_steps=0", "total_steps: must be > 0"),
        ("agent.gamma=1.5", "agent.gamma"),
        ("agent.actor_lr=nan", "finite"),
        ("device=tpu", "device: 'tpu' is not one of auto, cpu, cuda"),
        ("env.reward_version=v3", "env.reward_version"),
        ("env.name=MT1:reach-v2", "reach-v3"),
        ("progress=maybe", "expected true or false"),
        ("seed", "key=value"),
        ("agent=3", "expected a mapping"),
    ],
)
def test_bad_overrides_give_one_line_errors(override, fragment):
    """What a run starts from: plain values checked by config, names by their registries."""
    with pytest.raises(ConfigError) as error:
        build_run_config(CONFIGS / "synthetic.yaml", [override])
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["total_steps=100", "warmup_steps=100"], "warmup_steps (100) >= total_steps (100)"),
        (["total_steps=100", "warmup_steps=500"], "warmup_steps (500) >= total_steps (100)"),
        (
            ["replay_capacity_per_task=8", "agent.batch_size_per_task=16"],
            "replay_capacity_per_task (8) < agent.batch_size_per_task (16)",
        ),
        (["total_steps=100", "warmup_steps=0", "agent.batch_size_per_task=128"], "(128)"),
        # 0.1 added ten times is 0.9999999999999999: the loop's credit never reaches an update.
        (["total_steps=110", "warmup_steps=100", "updates_per_step=0.1"], "updates_per_step"),
    ],
)
def test_a_run_that_would_never_update_is_refused_before_it_starts(tmp_path, overrides, fragment):
    """Such a run would "finish" untrained with exit 0; it is refused in one line, exit 2."""
    with pytest.raises(ConfigError) as error:
        build_run_config(CONFIGS / "synthetic.yaml", overrides)
    assert fragment in str(error.value) and "\n" not in str(error.value)
    result = mtrl(
        "train", "--config", "synthetic", f"run_dir={tmp_path}/run", *overrides, check=False
    )
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_the_shortest_runs_that_update_are_accepted():
    for overrides in (
        ["total_steps=101", "warmup_steps=100", "agent.batch_size_per_task=16"],
        ["total_steps=120", "warmup_steps=100", "updates_per_step=0.1"],
        ["replay_capacity_per_task=16", "agent.batch_size_per_task=16"],
    ):
        build_run_config(CONFIGS / "synthetic.yaml", overrides)


@pytest.mark.parametrize("value", ["1e-320", "0", "-1e-3", "nan", "inf", "-inf", "5e-324"])
@pytest.mark.parametrize(
    "key", ["agent.tau", "agent.actor_lr", "agent.critic_lr", "agent.alpha_lr", "agent.gamma"]
)
def test_values_that_must_be_positive_must_be_normal_positive_floats(key, value):
    """A subnormal (a run flushes it to 0: tau=1e-320 was saved as 0.0, and the run could not
    resume), zero, negative or non-finite value is refused in one line naming the key."""
    with pytest.raises(ConfigError) as error:
        build_config(CONFIGS / "synthetic.yaml", [f"{key}={value}"])
    assert str(error.value).startswith(f"{key}:") and "\n" not in str(error.value)


def test_a_config_built_in_python_is_checked_like_an_override():
    """validate() sees what bypassed parsing: NaN, infinities and subnormals in a Config."""
    for tau in (float("nan"), float("inf"), 1e-320):
        with pytest.raises(ConfigError, match="agent.tau:"):
            validate(Config(agent=AgentConfig(tau=tau)))
    with pytest.raises(ConfigError, match="agent.target_entropy: .*subnormal"):
        validate(Config(agent=AgentConfig(target_entropy=-1e-320)))
    with pytest.raises(ConfigError, match="agent.grad_clip_norm: .*subnormal"):
        build_config(CONFIGS / "synthetic.yaml", ["agent.grad_clip_norm=1e-310"])
    tiny = build_config(CONFIGS / "synthetic.yaml", ["agent.tau=1e-300", "agent.gamma=1e-300"])
    assert tiny.agent.tau == 1e-300 and tiny.agent.gamma == 1e-300
    assert validate(Config(agent=AgentConfig(grad_clip_norm=0.0, target_entropy=-0.0)))


def test_bad_yaml_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found"):
        build_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("agent: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        build_config(listed)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("agent:\n  hiden_sizes: [3]\n")
    with pytest.raises(ConfigError, match="did you mean: agent.hidden_sizes"):
        build_config(unknown)


def test_a_preset_extends_its_base_and_overrides_only_its_own_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 4\nagent:\n  tau: 0.01\n  critic_lr: 0.002\n")
    (tmp_path / "variant").mkdir()
    (tmp_path / "variant" / "v.yaml").write_text(
        "base: ../base.yaml\nagent:\n  critic_lr: 0.001\n  critic: multihead\n"
    )
    config = build_config(tmp_path / "variant" / "v.yaml")
    assert (config.seed, config.agent.tau, config.agent.critic_lr) == (4, 0.01, 0.001)
    assert config.agent.critic == "multihead"
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        build_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "c.yaml")


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = build_config(CONFIGS / "synthetic.yaml", ["seed=7", "agent.critic=multihead"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config
    assert from_dict(to_dict(config)) == config


def test_config_is_frozen():
    config = Config()
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]


def test_every_preset_loads():
    presets = sorted(CONFIGS.rglob("*.yaml"))
    assert presets
    for preset in presets:
        if "sweeps" in preset.parts:
            continue
        build_run_config(preset)  # the values and every registered name (env, networks, methods)


def test_meta_world_presets_take_bf16_where_the_hardware_has_it_and_synthetic_ones_stay_fp32():
    # bf16 learns level with fp32 on MT1 and MT10 (docs/benchmarks.md, "bf16 against fp32"), so
    # every Meta-World preset asks for auto; the synthetic ones keep fp32's exact numerics.
    assert Config().agent.precision == "fp32"
    for preset in sorted(CONFIGS.rglob("*.yaml")):
        if "sweeps" in preset.parts:
            continue
        config = load_config(preset)
        expected = "fp32" if config.env.name.startswith("synthetic") else "auto"
        assert config.agent.precision == expected, preset


_keys = st.sampled_from(
    [
        "seed",
        "total_steps",
        "agent.actor",
        "agent.hidden_sizes",
        "agent.gamma",
        "env.name",
        "device",
        "progress",
        "agent.tau",
        "warmup_steps",
        "nonsense",
        "agent.nonsense",
        "",
    ]
)
_values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True).map(str),
    st.sampled_from(["[1,2]", "[]", "{}", "null", "~", "[a"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_keys, _values), max_size=4))
def test_arbitrary_overrides_parse_or_fail_with_config_error(pairs):
    overrides = [f"{key}={value}" for key, value in pairs]
    try:
        config = build_config(CONFIGS / "synthetic.yaml", overrides)
    except ConfigError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(config, Config)


def test_parse_overrides_nests_keys():
    assert parse_overrides(["agent.critic=multihead", "seed=2"]) == {
        "agent": {"critic": "multihead"},
        "seed": 2,
    }


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Each level of nine aliases multiplies the label by nine (nine levels are 9^9 strings from
    450 bytes); three levels here, so that the test stays small even where aliases expand."""
    levels = ['  - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 3):
        levels.append(f"  - &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("label:\n" + "\n".join(levels) + "\n")
    with pytest.raises(ConfigError, match="alias") as error:
        build_config(bomb)
    assert str(bomb) in str(error.value) and "\n" not in str(error.value)
    anchored = tmp_path / "anchored.yaml"
    anchored.write_text("agent:\n  actor: &net multihead\n  critic: *net\n")
    with pytest.raises(ConfigError, match="line 3"):
        build_config(anchored)


@pytest.mark.parametrize("written", ["0755", "1_000", "0x1F", "1:30", "1.50", "007"])
def test_a_label_written_as_digits_stays_what_the_user_wrote(tmp_path, written):
    preset = tmp_path / "p.yaml"
    preset.write_text(f"label: {written}\nwandb:\n  project: {written}\nenv:\n  name: synthetic\n")
    config = build_config(preset)
    assert config.label == written and config.wandb.project == written
    assert build_config(None, [f"label={written}"]).label == written
    assert build_config(preset, ["seed=0755"]).seed == 493  # an integer field keeps YAML's value


def test_a_users_yaml_extends_a_shipped_preset_by_name(tmp_path):
    (tmp_path / "mine.yaml").write_text("base: synthetic\nseed: 5\n")
    config = build_config(tmp_path / "mine.yaml")
    assert config.seed == 5 and config.env.name == "synthetic"
    assert config.agent.hidden_sizes == build_config("synthetic").agent.hidden_sizes
    (tmp_path / "variant.yaml").write_text("base: mt10/pcgrad_paper/pcgrad\nseed: 2\n")
    assert build_config(tmp_path / "variant.yaml").agent.critic_grad == "pcgrad"
    (tmp_path / "synthetic.yaml").write_text("seed: 9\n")  # a file beside it comes first
    (tmp_path / "mine.yaml").write_text("base: synthetic.yaml\n")
    assert (build_config(tmp_path / "mine.yaml").seed, build_config("synthetic").seed) == (9, 0)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("agent.critic=mmoe:experts=100000000", "experts: at most 256"),
        ("agent.actor=shared:width=10000000", "width: at most 65,536"),
        ("agent.hidden_sizes=[10000000]", "agent.hidden_sizes: at most 65,536"),
        (
            f"agent.hidden_sizes=[{','.join(['8'] * 100)}]",
            "agent.hidden_sizes (layers): at most 32",
        ),
        ("agent.bins=1000000000", "agent.bins: at most"),
        ("env.name=synthetic:5000", "env.name"),
        ("replay_capacity_per_task=1e15", "replay_capacity_per_task: at most"),
        ("agent.batch_size_per_task=1e12", "agent.batch_size_per_task: at most"),
        ("agent.task_embedding_dim=1e9", "agent.task_embedding_dim: at most"),
        ("final_eval_episodes=1e12", "final_eval_episodes: at most"),
        ("seed=-1", "seed: must be >= 0"),
        ("seed=1e23", "seed"),
        ("seed=4294967296", "seed: at most"),
        ("agent.v_min=-1e308", "agent.v_min"),
        ("agent.v_max=1e308", "agent.v_max"),
        ("agent.v_min=9.99999", "agent.v_min"),
    ],
)
def test_what_a_config_asks_for_is_bounded_before_anything_is_built(
    monkeypatch, override, fragment
):
    """Each of these asked for gigabytes (or crashed a seeding call): the error must come from
    arithmetic on the values, before any module is built, even on the meta device."""
    import torch

    def built(*args, **kwargs):
        raise AssertionError("a module was built before the config was refused")

    monkeypatch.setattr(torch.nn.Module, "__init__", built)
    with pytest.raises(ConfigError) as error:
        build_run_config(CONFIGS / "synthetic.yaml", [override])
    assert fragment in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "override",
    [
        "agent.hidden_sizes=[60000,60000,60000]",
        "agent.critic=mmoe:experts=256,width=4096",
        "agent.critic=bronet:blocks=64,width=8192",
    ],
)
def test_a_body_past_the_parameter_ceiling_is_refused_from_its_shapes(override):
    from mtrl.limits import MAX_BODY_PARAMETERS

    with pytest.raises(ConfigError, match=f"at most {MAX_BODY_PARAMETERS:,} parameters"):
        build_run_config(CONFIGS / "synthetic.yaml", [override])


def test_every_shipped_preset_is_within_the_bounds():
    from mtrl.agents.networks import network_count
    from mtrl.envs import resolve_task_names
    from mtrl.limits import MAX_BODY_PARAMETERS

    for preset in sorted(CONFIGS.rglob("*.yaml")):
        if "sweeps" in preset.parts:
            continue
        agent = build_config(preset).agent
        tasks = len(resolve_task_names(build_config(preset).env.name))
        for spec in (agent.actor, agent.critic):
            count = network_count(spec, 39 + tasks + 4, agent.bins, tasks, agent.hidden_sizes)
            assert count < MAX_BODY_PARAMETERS / 2, (preset, spec, count)
