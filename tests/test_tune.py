"""`mtrl tune`: a study of tiny synthetic trials in SQLite, its best preset, pruning, a rerun that
continues the study, --methods, and bad search spaces (one line, exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from mtrl_process import TINY

import mtrl
from mtrl.cli import main
from mtrl.config import ConfigError, load_config, to_dict
from mtrl.experiments.tune import OBJECTIVES, load_space, objective_value, open_storage, open_study
from mtrl.training.run import build_run_config
from mtrl.training.session import read_run_info

# Trials of 200 steps: evaluations at steps 100 (periodic) and 200 (final).
TRIAL = [*TINY, "total_steps=200", "final_eval_episodes=1"]


def write_space(tmp_path: Path, **changes) -> Path:
    space = {
        "name": "tiny",
        "preset": "synthetic",
        "overrides": TRIAL,
        "params": {
            "agent.actor_lr": {"type": "float", "low": "1e-4", "high": "1e-2", "log": True},
            "agent.critic": {"type": "categorical", "choices": ["shared", "multihead"]},
        },
        "n_trials": 2,
        "sampler": "random",
        "pruner": "none",
        "out": str(tmp_path / "out"),
    }
    space.update(changes)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


def trials(out: Path, name: str = "tiny") -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(f"sqlite:///{out / 'study.db'}")
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def test_a_study_writes_its_best_preset_and_a_rerun_continues_it(tmp_path):
    path = write_space(tmp_path)
    out = tmp_path / "out"
    assert main(["tune", str(path), "--jobs", "2"]) == 0
    done = trials(out)
    assert [t.state.name for t in done] == ["COMPLETE", "COMPLETE"]
    assert (out / "study.db").is_file() and "| 0 | complete |" in (out / "trials.md").read_text()
    # The best preset holds only what differs from the defaults, and `mtrl train` builds the best
    # trial's config from it.
    best = max(done, key=lambda t: t.value)
    preset = out / "best.yaml"
    assert "actor_lr" in preset.read_text() and "gamma" not in preset.read_text()
    trained = to_dict(load_config(out / f"trial_{best.number:04d}" / "config.yaml"))
    rebuilt = to_dict(build_run_config(preset))
    for key in ("run_dir", "torch_threads"):  # the tuner's, per trial
        trained.pop(key), rebuilt.pop(key)
    assert rebuilt == trained and rebuilt["agent"]["actor_lr"] == best.params["agent.actor_lr"]

    finished = {k: (out / f"trial_{k:04d}" / "run.json").read_bytes() for k in (0, 1)}
    # A command killed mid-trial leaves trial 2 running in the study, its run stopped at step 100.
    space = load_space(path)
    study = open_study(space, open_storage(f"sqlite:///{out / 'study.db'}"))
    trial = study.ask(space.distributions())
    run_dir = out / "trial_0002"
    trial.set_user_attr("run_dir", str(run_dir))
    stop = mtrl.Callback(on_eval=lambda step, results, final: False)
    overrides = space.trial_overrides(trial.params)
    mtrl.train(space.preset, overrides=overrides, run_dir=run_dir, callbacks=stop)
    assert read_run_info(run_dir)["step"] == 100

    # Rerun for 4 trials: trial 2 resumes from its checkpoint, trial 3 starts, 0 and 1 stay.
    assert main(["tune", str(path), "--n-trials", "4", "--jobs", "2"]) == 0
    done = trials(out)
    assert [t.state.name for t in done] == ["COMPLETE"] * 4
    for k, text in finished.items():
        assert (out / f"trial_{k:04d}" / "run.json").read_bytes() == text
        assert (out / f"trial_{k:04d}.log").read_text().count("$ mtrl tune") == 1
    resumed = read_run_info(run_dir)
    assert resumed["step"] == 200 and resumed["resumed_at"]
    assert "resume trial 2" in (out / "trial_0002.log").read_text()
    assert "start trial 3" in (out / "trial_0003.log").read_text()
    # Each command seeds the sampler afresh: no trial repeats another's draw.
    assert len({t.params["agent.actor_lr"] for t in done}) == 4


def test_a_trial_the_pruner_stops_ends_cleanly_marked_pruned(tmp_path):
    # No success rate reaches 1.01: the threshold prunes at the first periodic evaluation.
    path = write_space(tmp_path, n_trials=1, pruner={"name": "threshold", "lower": 1.01})
    assert main(["tune", str(path)]) == 0
    out = tmp_path / "out"
    assert [t.state.name for t in trials(out)] == ["PRUNED"]
    run_dir = out / "trial_0000"
    info = read_run_info(run_dir)
    assert info["status"] == "interrupted" and info["step"] == 100
    assert "PruneTrial.on_eval" in info["reason"]
    marker = json.loads((run_dir / "trial.json").read_text())
    assert marker["state"] == "pruned" and marker["step"] == 100
    assert not (out / "best.yaml").exists()  # no complete trial to take it from


def test_methods_get_one_study_each_with_the_same_budget_and_a_table(tmp_path, capsys):
    params = {
        "agent.actor_lr": {"type": "float", "low": "1e-4", "high": "1e-2", "log": True},
        "agent.critic_grad": {"type": "categorical", "choices": ["mean", "pcgrad"]},
    }
    path = write_space(tmp_path, n_trials=1, params=params)
    assert main(["tune", str(path), "--methods", "mean", "pcgrad"]) == 0
    out = tmp_path / "out"
    for method in ("mean", "pcgrad"):
        (trial,) = trials(out, f"tiny/{method}")
        assert trial.state.name == "COMPLETE" and set(trial.params) == {"agent.actor_lr"}
        config = load_config(out / method / "trial_0000" / "config.yaml")
        assert config.agent.critic_grad == config.agent.actor_grad == method
    assert "critic_grad: pcgrad" in (out / "pcgrad" / "best.yaml").read_text()
    table = (out / "methods.md").read_text()
    assert "| mean | " in table and "| pcgrad | " in table
    assert "the space's agent.critic_grad dropped" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"params": {"agent.actor_lrr": {"type": "float", "low": 0.1, "high": 1.0}}},
            "unknown config key 'agent.actor_lrr'",
        ),
        (
            {"params": {"agent.actor_lr": {"type": "normal", "low": 0.1}}},
            "expected a mapping with type",
        ),
        (
            {"params": {"agent.actor_lr": {"type": "float", "low": 0.1, "high": 0.01}}},
            "low (0.1) must be below high (0.01)",
        ),
        (
            {"params": {"agent.actor_lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}},
            "a log distribution needs low > 0",
        ),
        (
            {"params": {"agent.actor_lr": {"type": "float", "low": 0.1, "hgih": 0.2}}},
            "unknown key hgih",
        ),
        (
            {"params": {"agent.batch_size_per_task": {"type": "float", "low": 8, "high": 64}}},
            "is an integer key; use type: int",
        ),
        (
            {"params": {"agent.gamma": {"type": "float", "low": 0.9, "high": 1.5}}},
            "agent.gamma: must be in (0, 1)",
        ),
        (
            {
                "params": {
                    "agent.critic_grad": {"type": "categorical", "choices": ["mean", "pcgradd"]}
                }
            },
            "pcgradd",
        ),
        ({"params": {"run_dir": {"type": "categorical", "choices": ["a", "b"]}}}, "the tuner sets"),
        ({"objective": "best_mean"}, "objective 'best_mean' is not one of"),
        ({"pruner": "hyperband"}, "pruner 'hyperband' is not one of"),
        ({"pruner": {"name": "median", "n_warmup": 3}}, "pruner median:"),
        ({"sampler": "grid"}, "sampler 'grid' is not one of"),
        ({"n_trials": 0}, "n_trials must be an integer >= 1"),
        ({"trials": 3}, "unknown key trials"),
    ],
)
def test_a_bad_space_is_one_line_and_exit_2_before_anything_starts(
    tmp_path, capsys, changes, message
):
    assert main(["tune", str(write_space(tmp_path, **changes))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mtrl: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_bad_command_line_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    assert main(["tune", str(write_space(tmp_path)), "--jobs", "0"]) == 2
    assert capsys.readouterr().err == "mtrl: error: --jobs must be > 0, got 0\n"
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    assert main(["tune", str(write_space(tmp_path))]) == 2
    assert capsys.readouterr().err == (
        "mtrl: error: mtrl tune needs optuna, which is not installed: "
        "pip install 'mtrl-suite[optuna]'\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_study_is_not_continued_from_another_space(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    storage = open_storage(f"sqlite:///{out / 'study.db'}")
    open_study(load_space(write_space(tmp_path)), storage)
    wider = {"type": "float", "low": "1e-5", "high": "1e-2", "log": True}
    params = {
        "agent.actor_lr": wider,
        "agent.critic": {"type": "categorical", "choices": ["shared"]},
    }
    with pytest.raises(
        ConfigError, match=r"study tiny was made from another search space \(params"
    ):
        open_study(load_space(write_space(tmp_path, params=params)), storage)
    changed_base = load_space(write_space(tmp_path, overrides=[*TRIAL, "agent.gamma=0.9"]))
    with pytest.raises(ConfigError, match=r"another search space \(config differ"):
        open_study(changed_base, storage)
    # What may change: the budget, the sampler, the pruner.
    open_study(
        load_space(write_space(tmp_path, n_trials=5, sampler="tpe", pruner="median")), storage
    )


def test_the_example_space_is_valid():
    space = load_space(Path(__file__).resolve().parent.parent / "examples" / "tune_synthetic.yaml")
    assert space.n_trials == 8 and [p.key for p in space.params][0] == "agent.actor_lr"


def test_a_run_directory_that_is_no_trial_of_the_study_is_refused(tmp_path, capsys):
    # A study.db deleted, or another --storage, beside trial directories of an earlier study: a
    # new trial 0 must not take (or resume) the old trial 0's run.
    stray = tmp_path / "out" / "trial_0000"
    stray.mkdir(parents=True)
    (stray / "run.json").write_text('{"status": "finished", "step": 200}')
    assert main(["tune", str(write_space(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trial_0000 holds a run that is no trial of the study" in err
    assert not (tmp_path / "out" / "trial_0000.log").exists()


def test_the_objectives_score_the_last_record_of_their_kind(tmp_path):
    def record(step, kind, rates, returns):
        tasks = {f"tasks/t{k}/success_rate": rate for k, rate in enumerate(rates)}
        tasks |= {f"tasks/t{k}/return": value for k, value in enumerate(returns)}
        return json.dumps({"step": step, "kind": kind, "eval/mean_success_rate": 0.5, **tasks})

    lines = [
        record(100, "eval", [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]),
        record(200, "eval", [0.0, 0.2, 0.4, 1.0], [-4.0, -2.0, 0.0, 2.0]),
        record(300, "final_eval", [0.0, 0.5, 0.5, 1.0], [10.0, 20.0, 30.0, 40.0]),
    ]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    expected = {
        "final_mean": 0.5,
        "final_iqm": 0.5,  # the middle two of four
        "last_eval_mean": 0.4,
        "last_eval_iqm": 0.3,
        "final_return": 25.0,
        "last_eval_return": -1.0,
    }
    assert set(expected) == set(OBJECTIVES)
    for objective, value in expected.items():
        assert objective_value(tmp_path, objective) == pytest.approx(value), objective
    assert objective_value(tmp_path / "nothing", "final_mean") is None
