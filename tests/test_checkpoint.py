"""Checkpoints never run code, refuse damage with one line naming the file, and survive kills."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from mtrl.errors import RunError
from mtrl.training.checkpoint import (
    _HEADER,
    FORMAT_VERSION,
    MAGIC,
    CheckpointError,
    CheckpointKeeper,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def _payload() -> dict:
    return {
        "weights": torch.arange(12.0).reshape(3, 4),
        "step": 7,
        "names": ["a", "b"],
        "rng": {"state": 2**100 + 5, "pos": 3},
    }


def _with_valid_header(body: bytes) -> bytes:
    """An attacker can compute the checksum too: the header alone must not be the defence."""
    return _HEADER.pack(MAGIC, FORMAT_VERSION, hashlib.sha256(body).digest()) + body


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_keeps_tensors_and_plain_data(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload())
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["weights"], _payload()["weights"])
    assert loaded["step"] == 7 and loaded["names"] == ["a", "b"]
    assert loaded["rng"]["state"] == 2**100 + 5


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"step": 1, "evil": _RunsCode(marker)}, buffer, pickle_protocol=protocol)
    path = tmp_path / "evil.pt"
    path.write_bytes(_with_valid_header(buffer.getvalue()))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "refused" in message
    assert not marker.exists()


def test_a_raw_pickle_and_a_plain_torch_file_are_not_checkpoints(tmp_path):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    plain = tmp_path / "plain.pt"
    torch.save(_payload(), plain)
    for path in (raw, plain):
        with pytest.raises(CheckpointError, match="not an mtrl checkpoint"):
            load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("keep_fraction", [0.0, 0.01, 0.5, 0.999])
def test_truncated_checkpoints_are_refused(tmp_path, keep_fraction):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.parametrize("position", [0, 10, 50, -1, -100])
def test_a_flipped_bit_anywhere_is_refused(tmp_path, position):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload())
    data = bytearray(path.read_bytes())
    data[position] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert "\n" not in str(caught.value)


def test_a_newer_format_version_is_refused_by_name(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload())
    data = bytearray(path.read_bytes())
    data[: _HEADER.size] = _HEADER.pack(MAGIC, FORMAT_VERSION + 1, bytes(data[12:44]))
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=f"format {FORMAT_VERSION + 1} is not supported"):
        load_checkpoint(path)


def test_missing_file_and_empty_run_dir(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_checkpoint(tmp_path)


def test_a_failed_write_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, _payload())

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 8})
    assert load_checkpoint(path)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_keeper_keeps_the_last_k_and_the_best(tmp_path):
    keeper = CheckpointKeeper(tmp_path, keep=2)
    for step, success in [(10, 0.2), (20, 0.9), (30, 0.5), (40, None)]:
        keeper.save(step, {"step": step}, success)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "step_0000000030.pt", "step_0000000040.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["step"] == 20
    assert latest_checkpoint(tmp_path).name == "step_0000000040.pt"
    assert load_checkpoint(tmp_path)["step"] == 40  # a run directory means its latest checkpoint


# Written at commit 10a427e; named as a periodic checkpoint so it can be resumed from.
OLD_CHECKPOINT = Path(__file__).parent / "data" / "step_0000000120.pt"


def test_a_checkpoint_written_before_the_schema_had_an_owner_still_loads_and_acts():
    """Written at commit 10a427e (synthetic, multi-head critic, GradNorm, 120 steps), before the
    gradient engine and the checkpoint schema moved: it loads, and its agent acts as recorded."""
    from mtrl.evaluation.policy import load_agent
    from mtrl.training.checkpoint import TrainingCheckpoint

    payload = load_checkpoint(OLD_CHECKPOINT)
    checkpoint = TrainingCheckpoint.from_payload(OLD_CHECKPOINT, payload, resume=True)
    assert checkpoint.step == 120 and checkpoint.task_names == [f"point-{i}" for i in range(4)]
    assert checkpoint.replay is None and checkpoint.env is not None
    assert set(checkpoint.to_payload()) == set(payload)  # nothing lost, nothing invented
    agent = load_agent(OLD_CHECKPOINT, payload)
    assert agent.critic_method.initial_losses is not None  # GradNorm's state came back too
    obs = torch.cat([torch.full((4, 2), 0.3), torch.eye(4)], 1).numpy()
    recorded = [  # the same agent's actions, computed at 10a427e
        [0.018364192917943, 0.004607987590134144],
        [0.09871881455183029, 0.037258580327034],
        [0.09156332910060883, -0.028704876080155373],
        [0.0378260463476181, -0.07329407334327698],
    ]
    assert torch.allclose(
        torch.as_tensor(agent.act(obs, deterministic=True)), torch.tensor(recorded)
    )


def test_an_old_checkpoint_resumes(tmp_path):
    import shutil

    from mtrl.config import from_dict, save_config
    from mtrl.training.trainer import Trainer, resume_config

    run_dir = tmp_path / "old"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(OLD_CHECKPOINT, run_dir / "checkpoints" / OLD_CHECKPOINT.name)
    config = from_dict({**load_checkpoint(OLD_CHECKPOINT)["config"], "run_dir": str(run_dir)})
    save_config(config, run_dir / "config.yaml")
    trainer = Trainer(resume_config(run_dir, ["total_steps=140"]), run_dir, resume=True)
    try:
        assert trainer.step == 120
        trainer.train()
    finally:
        trainer.close()
    assert load_checkpoint(run_dir)["step"] == 140  # the run directory's latest checkpoint


@pytest.mark.parametrize("dropped", ["agent", "task_names", "step"])
def test_a_checkpoint_missing_a_field_is_refused_in_one_line_naming_it(tmp_path, dropped):
    from mtrl.evaluation.policy import load_agent
    from mtrl.training.checkpoint import CheckpointError, TrainingCheckpoint

    payload = load_checkpoint(OLD_CHECKPOINT)
    del payload[dropped]
    with pytest.raises(CheckpointError, match=f"not a training checkpoint \\(no {dropped}\\)"):
        TrainingCheckpoint.from_payload("x.pt", payload)
    with pytest.raises(CheckpointError) as error:
        load_agent(Path("x.pt"), payload)
    assert "\n" not in str(error.value)


def test_resuming_needs_the_resume_state():
    from mtrl.training.checkpoint import CheckpointError, TrainingCheckpoint

    payload = load_checkpoint(OLD_CHECKPOINT)
    del payload["rng"]
    TrainingCheckpoint.from_payload("x.pt", payload)  # enough to act
    with pytest.raises(CheckpointError, match="not a resumable training checkpoint \\(no rng\\)"):
        TrainingCheckpoint.from_payload("x.pt", payload, resume=True)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"final_eval_episodes": -1}, "final_eval_episodes: must be > 0"),
        ({"final_eval_episodes": 0}, "final_eval_episodes: must be > 0"),
        ({"final_eval_episodes": 10**12}, "final_eval_episodes: at most"),
        ({"agent": {"hidden_sizes": [10**6, 10**6]}}, "agent.hidden_sizes: at most"),
    ],
)
def test_a_re_signed_checkpoint_with_bad_fields_is_refused_before_anything_is_built(
    tmp_path, monkeypatch, changes, fragment
):
    """The checksum is no defence (anyone can recompute it): a loaded checkpoint's config gets
    the checks of a new config, before any module is built."""
    import mtrl
    from mtrl.config import _merge

    payload = load_checkpoint(OLD_CHECKPOINT)
    payload["config"] = _merge(payload["config"], changes)
    path = tmp_path / "checkpoints" / "step_0000000120.pt"
    save_checkpoint(path, payload)

    def built(*args, **kwargs):
        raise AssertionError("a module was built before the checkpoint was refused")

    monkeypatch.setattr(torch.nn.Module, "__init__", built)
    for source in (path, tmp_path):
        with pytest.raises(CheckpointError) as error:
            mtrl.load_policy(source)
        message = str(error.value)
        assert str(path) in message and fragment in message and "\n" not in message


def test_a_checkpoint_of_another_architecture_as_the_latest_is_one_line_naming_it(tmp_path):
    """Resuming a run whose latest checkpoint came from another run (a multi-head critic where
    the run's config says shared): one line naming the file, and the run directory untouched."""
    import shutil

    from mtrl.config import from_dict, save_config
    from mtrl.training.trainer import Trainer, resume_config

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    dropped = run_dir / "checkpoints" / OLD_CHECKPOINT.name
    shutil.copy(OLD_CHECKPOINT, dropped)
    saved = load_checkpoint(OLD_CHECKPOINT)["config"]
    other = {**saved, "run_dir": str(run_dir), "agent": {**saved["agent"], "critic": "shared"}}
    save_config(from_dict(other), run_dir / "config.yaml")
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for _ in range(2):  # the lock is released again: a second try gets the same line
        # The checkpoint's own config names another critic than config.yaml: refused when the
        # two are compared, before any state is loaded.
        with pytest.raises(RunError) as error:
            Trainer(resume_config(run_dir, ["total_steps=140"]), run_dir, resume=True).close()
        message = str(error.value)
        assert str(dropped) in message and "agent.critic" in message and "\n" not in message
    after = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert {name: data for name, data in after.items() if name != "writer.lock"} == before
