"""Per-task replay: stratified [T, B] batches, each task's rows from its own ring."""

from __future__ import annotations

import numpy as np
import torch

from mtrl.training.replay import TaskReplay


def _fill(replay: TaskReplay, steps: int, num_tasks: int, obs_dim: int) -> None:
    for step in range(steps):
        # Encode (task, step) in the observation so every sampled row can be traced back.
        obs = np.stack([np.full(obs_dim, 1000 * task + step) for task in range(num_tasks)])
        replay.add(
            obs, np.zeros((num_tasks, 2)), np.arange(num_tasks) + step, obs + 1, np.zeros(num_tasks)
        )


def test_batch_is_stratified_and_rows_belong_to_their_task():
    replay = TaskReplay(num_tasks=3, obs_dim=4, action_dim=2, capacity_per_task=50, seed=0)
    _fill(replay, 20, 3, 4)
    batch = replay.sample(16)
    assert batch.obs.shape == (3, 16, 4) and batch.action.shape == (3, 16, 2)
    assert batch.reward.shape == (3, 16) and batch.terminated.shape == (3, 16)
    task_of_row = torch.div(batch.obs[..., 0], 1000, rounding_mode="floor")
    assert torch.equal(task_of_row, torch.arange(3).float().unsqueeze(1).expand(3, 16))
    step_of_row = batch.obs[..., 0] % 1000
    assert torch.equal(batch.reward, torch.arange(3).float().unsqueeze(1) + step_of_row)
    assert torch.equal(batch.next_obs, batch.obs + 1)


def test_ring_overwrites_oldest_and_size_saturates():
    replay = TaskReplay(num_tasks=2, obs_dim=1, action_dim=2, capacity_per_task=5, seed=0)
    _fill(replay, 12, 2, 1)
    assert len(replay) == 5
    steps = set((replay.sample(256).obs[..., 0] % 1000).flatten().tolist())
    assert steps == {7.0, 8.0, 9.0, 10.0, 11.0}


def test_state_round_trip_restores_contents_and_sampling():
    replay = TaskReplay(num_tasks=2, obs_dim=3, action_dim=2, capacity_per_task=8, seed=1)
    _fill(replay, 6, 2, 3)
    state = replay.state_dict()
    expected = replay.sample(10)
    restored = TaskReplay(num_tasks=2, obs_dim=3, action_dim=2, capacity_per_task=8, seed=99)
    restored.load_state_dict(state)
    assert len(restored) == 6
    again = restored.sample(10)
    assert torch.equal(again.obs, expected.obs) and torch.equal(again.reward, expected.reward)
