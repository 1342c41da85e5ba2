"""Meta-World's evaluation protocol: one episode per training goal, checked against Meta-World's own
``metaworld.evaluation.evaluation`` with its scripted expert policies.

The experts are deterministic and a goal fixes an episode, so success depends only on which goals
were visited. With 60-step episodes the push expert succeeds on about 40% of its goals and the
reach expert on about 90%: a loop that drew goals with replacement (~32 of 50 distinct) would
disagree with Meta-World's evaluation over every goal.
"""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from metaworld.evaluation import evaluation as metaworld_evaluation
from metaworld.policies import ENV_POLICY_MAP

from mtrl.envs import make_env
from mtrl.envs import metaworld as mw
from mtrl.envs.synthetic import SyntheticVecEnv
from mtrl.evaluation.protocol import evaluate, goal_schedule

SHORT_EPISODES = 60  # short enough that the experts fail on some goals


def test_goal_schedule_covers_every_goal_once_subsets_and_cycles():
    assert goal_schedule(50, 50) == list(range(50))
    assert goal_schedule(5, 50) == [0, 10, 20, 30, 40]
    subset = goal_schedule(7, 50)
    assert len(set(subset)) == 7 and subset == sorted(subset) and subset == goal_schedule(7, 50)
    assert goal_schedule(120, 50) == list(range(50)) * 2 + goal_schedule(20, 50)
    assert goal_schedule(3, 1) == [0, 0, 0]
    with pytest.raises(ValueError):
        goal_schedule(0, 50)


class ExpertAgent:
    """Meta-World's scripted experts, one per env row, behind Meta-World's ``Agent`` protocol."""

    def __init__(self, task_names: list[str]) -> None:
        self.policies = [ENV_POLICY_MAP[name]() for name in task_names]

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Constant(s) may be too high": actions are clipped
            return np.stack(
                [
                    policy.get_action(np.asarray(obs[: mw.STATE_DIM], dtype=np.float64))
                    for policy, obs in zip(self.policies, observations, strict=True)
                ]
            )

    def reset(self, env_mask: np.ndarray) -> None:
        """The experts are stateless."""


def metaworld_reference(task_names: list[str], seed: int) -> dict[str, float]:
    """Meta-World's own loop over its own envs (``custom-mt-envs``: task i seeded ``seed + i``, the
    goals our task lists use), each cycling through its 50 goals without replacement."""
    envs = gym.make_vec(
        "Meta-World/custom-mt-envs",
        vector_strategy="sync",
        envs_list=task_names,
        seed=seed,
        max_episode_steps=SHORT_EPISODES,
        task_select="pseudorandom",
    )
    try:
        envs.call("toggle_sample_tasks_on_reset", True)
        _, _, per_task, _ = metaworld_evaluation(ExpertAgent(task_names), envs, num_episodes=50)
    finally:
        envs.close()
    return per_task


@pytest.mark.metaworld
@pytest.mark.parametrize(
    "spec", ["MT1:push-v3", "reach-v3,push-v3,pick-place-v3"], ids=["mt1", "three-tasks"]
)
def test_evaluation_matches_metaworlds_own_on_scripted_experts(spec):
    seed = 3
    with make_env(spec, seed, max_episode_steps=SHORT_EPISODES) as env:
        names = list(env.task_names)
        ours = evaluate(ExpertAgent(names).eval_action, env, 50)
    reference = metaworld_reference(names, seed)
    for name in names:
        assert ours[name].success_rate == pytest.approx(reference[name]), name
        assert ours[name].goal_indices == tuple(range(50))
        assert sum(ours[name].successes) == round(50 * ours[name].success_rate)
    assert 0.2 < ours["push-v3"].success_rate < 0.8  # the check can tell goal sets apart


@pytest.mark.metaworld
def test_each_episode_runs_on_its_scheduled_goal_and_training_goes_back_to_random():
    with make_env("MT1:reach-v3", 0, max_episode_steps=5) as env:
        seen: list[int] = []
        task_env = env._vec.envs[0]
        env.set_goal_schedule(goal_schedule(7, env.num_goals))
        env.reset()
        for _ in range(7):
            seen.append(env.goal_indices()[0])
            goal = pickle.loads(task_env.tasks[seen[-1]].data)["rand_vec"]
            assert np.array_equal(task_env.unwrapped._last_rand_vec, goal)  # the env runs it
            for _ in range(5):  # one whole 5-step episode; the last step resets to the next goal
                env.step(np.zeros((1, 4)))
        assert seen == goal_schedule(7, 50)
        env.set_goal_schedule(None)
        drawn = []
        for _ in range(40):
            env.reset()
            drawn.append(env.goal_indices()[0])
        assert len(set(drawn)) < 40  # with replacement again: 40 draws of 50 repeat (p > 0.99)
        with pytest.raises(mw.EnvError, match="goal schedule"):
            env.set_goal_schedule([50])
        # Periodic evaluations of a run (5 episodes) use the same subset every time, and leave
        # the env drawing at random again.
        first, second = (evaluate(lambda obs: np.zeros((1, 4)), env, 5) for _ in range(2))
        assert (
            first["reach-v3"].goal_indices == second["reach-v3"].goal_indices == (0, 10, 20, 30, 40)
        )
        assert env._vec.envs[0].schedule is None


def test_synthetic_env_has_one_goal_and_the_same_subset_every_evaluation():
    env = SyntheticVecEnv(2, seed=0)
    first = evaluate(lambda obs: np.zeros((2, 2)), env, 4)
    second = evaluate(lambda obs: np.zeros((2, 2)), env, 4)
    assert first["point-0"].goal_indices == second["point-0"].goal_indices == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="one goal"):
        env.set_goal_schedule([1])
