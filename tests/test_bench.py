"""The throughput benchmark's FLOP count, checked against a hand count and against torch's own."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtrl.agents.networks import make_network
from mtrl.experiments.bench import mlp_flops, update_flops


def test_mlp_flops_by_hand():
    # 3 rows through 5 -> 4 -> 2: 2 * 3 * (5 * 4 + 4 * 2) = 168
    assert mlp_flops(3, (5, 4, 2)) == 168


def test_update_flops_match_torchs_count_of_the_forward_passes():
    """The formula's forward terms equal torch's FLOP counter on the real networks."""
    obs, tasks, hidden, batch = 12, 3, (16, 8), 5
    rows = tasks * batch
    actor = make_network("shared", obs, 8, tasks, hidden)
    critic = make_network("shared", obs + 4, 1, tasks, hidden)
    with FlopCounterMode(display=False) as counter:
        actor(torch.randn(tasks, batch, obs))
    assert counter.get_total_flops() == mlp_flops(rows, (obs, *hidden, 8))
    with FlopCounterMode(display=False) as counter:
        critic(torch.randn(tasks, batch, obs + 4))
    critic_forward = counter.get_total_flops()
    assert critic_forward == mlp_flops(rows, (obs + 4, *hidden, 1))
    actor_forward = mlp_flops(rows, (obs, *hidden, 8))
    assert update_flops(obs, tasks, hidden, batch) == 4 * actor_forward + 12 * critic_forward


class _Busy:
    """Stands in for the busy process of table (g)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def kill(self) -> None:
        pass

    def wait(self) -> None:
        pass


def fake_measurements(monkeypatch) -> None:
    """Every timing of ``mtrl bench`` replaced by a constant, so that its tables print in a blink."""
    import mtrl.experiments.bench as bench

    parts = ("env", "inference", "replay", "update", "other")

    def window(spec, steps, hidden, batch, warmup, device="cpu", vector="sync", *rest):
        rate = 100.0 + 5 * (vector == "sharded") + 7 * ("bf16" in rest)
        return {"charts/env_steps_per_s": rate, **{f"charts/time_{p}_fraction": 0.2 for p in parts}}

    monkeypatch.setattr(bench, "sgemm_peak", lambda size, device=None, dtype=None: 1e11)
    monkeypatch.setattr(bench, "in_fresh_process", lambda function, *args: function(*args))
    monkeypatch.setattr(bench, "update_seconds_and_peak", lambda *args: (0.01, 9e10))
    monkeypatch.setattr(bench, "raw_rate", lambda spec, steps: 1000.0)
    monkeypatch.setattr(bench, "ours_rate", lambda spec, steps, vector="sync": 900.0)
    monkeypatch.setattr(bench, "training_window", window)
    monkeypatch.setattr(bench, "sb3_rate", lambda *args: 80.0)
    monkeypatch.setattr(bench, "at_once", lambda n, function, *args, **env: [function(*args)] * n)
    monkeypatch.setattr(bench, "update_seconds", lambda *args: 0.02)
    monkeypatch.setattr(bench.subprocess, "Popen", _Busy)


def test_bench_prints_each_table_once_in_order_and_its_flags_drop_theirs(monkeypatch, capsys):
    from mtrl.cli import main

    fake_measurements(monkeypatch)
    assert main(["bench", "--quick", "--device", "cpu", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    tables = [
        "(a) fp32",
        "(b) MT-SAC",
        "(c) env",
        "(d, e) training",
        "(f) two MT10",
        "(g) the MT10",
    ]
    at = [out.index(title) for title in tables]
    assert at == sorted(at) and all(out.count(title) == 1 for title in tables)
    assert "| MT50 | 6400 | bf16 |" in out and "| mtrl MT10, env.vector=sharded | 105 |" in out
    assert "MT10 end to end: agent.precision=bf16 1.07x fp32's env steps/s" in out
    assert "| beside one niced busy process | fp32 |" in out  # a `nice` run takes slices too

    assert main(["bench", "--quick", "--no-mt50", "--no-sharing", "--no-busy"]) == 0
    out = capsys.readouterr().out
    assert "(d, e) training" in out and "MT50" not in out
    assert "(f) two" not in out and "(g) the" not in out
