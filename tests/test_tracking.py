"""What a run shows outside its directory's JSONL: W&B (offline, read back from its own log file),
TensorBoard's config text, hparams and evaluation videos."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import imageio.v2 as imageio
from mtrl_process import TINY, run_mtrl
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtrl.experiments.sweep import load_sweep
from mtrl.training import tracking


def mtrl(*args: str) -> subprocess.CompletedProcess:
    result = run_mtrl(*args, env={"WANDB_SILENT": "true", "WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr
    return result


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``: a LevelDB-style log of protobuf
    records in 32 KiB blocks, after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, offset, pending = [], 7, b""
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # a block's tail too short for a header is padding
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if kind == 0:
            break
        pending += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def history(records: list) -> list[dict[str, str]]:
    return [
        {item.key or "/".join(item.nested_key): item.value_json for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


def test_track_logs_to_wandb_and_a_resume_continues_the_same_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    mtrl("train", "--config", "synthetic", "--track", "eval_video_every=200", *TINY,
         f"run_dir={run_dir}")  # fmt: skip
    first = json.loads((run_dir / "run.json").read_text())["wandb"]
    assert first["project"] == "mtrl" and len(first["run_id"]) == 8
    (run_file,) = run_dir.glob(f"wandb/offline-run-*-{first['run_id']}/run-{first['run_id']}.wandb")
    records = wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_id == first["run_id"] and run.project == "mtrl"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["env"]["name"] == "synthetic" and config["total_steps"] == 300
    rows = history(records)
    steps = [json.loads(row["global_step"]) for row in rows if "eval/mean_success_rate" in row]
    assert steps == [100, 200, 300]  # the periodic evaluations; at the last step the final one
    assert any("charts/env_steps_per_s" in row for row in rows)
    assert any("eval/final_table/nrows" in row for row in rows)
    videos = {key.split("/")[1] for row in rows for key in row if key.startswith("videos/")}
    assert videos == {"point-0", "point-1", "point-2", "point-3"}

    mtrl("train", "--resume", str(run_dir), "total_steps=400")
    second = json.loads((run_dir / "run.json").read_text())["wandb"]
    assert second["run_id"] == first["run_id"]
    files = sorted(run_dir.glob(f"wandb/offline-run-*-{first['run_id']}/run-*.wandb"))
    assert len(files) == 2  # the resume's process wrote the same W&B run id
    resumed = history(wandb_records([f for f in files if f != run_file][0]))
    assert max(json.loads(row["global_step"]) for row in resumed) == 400


def test_tensorboard_gets_the_config_the_hparams_and_the_videos(tmp_path):
    run_dir = tmp_path / "run"
    mtrl("train", "--config", "synthetic", "eval_video_every=200", *TINY, f"run_dir={run_dir}")
    assert "wandb" not in json.loads((run_dir / "run.json").read_text())
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert "config/text_summary" in events.Tags()["tensors"]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "name: synthetic" in text
    images = events.Tags()["images"]
    assert sorted(images) == [f"videos/point-{i}" for i in range(4)]
    assert [event.step for event in events.Images("videos/point-0")] == [200, 300]
    hparams = EventAccumulator(str(run_dir / "tensorboard" / "hparams")).Reload()
    assert "_hparams_/experiment" in hparams.summary_metadata
    assert [s.step for s in hparams.Scalars("hparams/final_mean_success_rate")]

    for step in (200, 300):  # each task's first episode, every second frame (64 x 64: as is)
        gif = run_dir / "eval" / "videos" / f"step_{step:010d}" / "point-0.gif"
        frames = imageio.mimread(gif)
        assert len(frames) > 2 and frames[0].shape[:2] == (64, 64)
    assert not (run_dir / "eval" / "videos" / f"step_{100:010d}").exists()


def test_a_sweep_groups_its_wandb_runs_under_its_name(tmp_path):
    sweep = tmp_path / "grid.yaml"
    sweep.write_text(
        "name: grid\nseeds: 2\noverrides: [wandb.project=p]\nruns:\n"
        "  - {preset: synthetic}\n"
        "  - {preset: synthetic, overrides: [wandb.group=mine, agent.critic=multihead]}\n"
    )
    groups = {
        run.label: [o for o in run.overrides if o.startswith("wandb.group=")]
        for run in load_sweep(sweep).runs
    }
    assert list(groups.values()) == [["wandb.group=grid"], ["wandb.group=mine"]]
    assert tracking.hparams({"a": {"b": [1, 2]}, "c": True}) == {"a.b": "[1, 2]", "c": True}


def test_a_sweeps_wandb_runs_are_named_and_tagged_by_method_and_seed(tmp_path):
    """Every method's seed-0 run of a sweep had the name ``seed0``: now ``<label>-seed<k>``, in
    the sweep's group, with the method as job type and [method, env, seed] as tags."""
    from mtrl.experiments.sweep import run_sweep

    sweep = tmp_path / "grid.yaml"
    overrides = [*TINY, "wandb.project=p", "wandb.mode=offline"]
    sweep.write_text(
        f"name: grid\nseeds: [3]\nout: {tmp_path / 'runs'}\noverrides: {json.dumps(overrides)}\n"
        "runs:\n  - {preset: synthetic, label: SAC}\n"
        "  - {preset: synthetic, label: MH-SAC, overrides: [agent.critic=multihead]}\n"
    )
    results = run_sweep(load_sweep(sweep), use_ray=False, say=lambda line: None)
    assert [r["status"] for r in results] == ["finished", "finished"], results
    for label in ("SAC", "MH-SAC"):
        run_dir = tmp_path / "runs" / label / "seed3"
        run_id = json.loads((run_dir / "run.json").read_text())["wandb"]["run_id"]
        (run_file,) = run_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")
        (run,) = [r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run"]
        assert run.display_name == f"{label}-seed3"
        assert (run.run_group, run.job_type) == ("grid", label)
        assert list(run.tags) == [label, "synthetic", "seed3"]
