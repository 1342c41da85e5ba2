"""Meta-World task sets: names and errors (no building), then real envs (few steps each).

Building is slow (goal generation: MT1 ~1 s, MT10 ~12 s), so MT10 is built once per module and the
rest use MT1 / two-task sets, whose goals are cached per (spec, seed) across tests.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator

import gymnasium as gym
import metaworld
import numpy as np
import pytest
from metaworld.policies import SawyerReachV3Policy
from rollouts import rollout

from mtrl.envs import METAWORLD_MAX_EPISODE_STEPS, EnvError, make_env, resolve_task_names
from mtrl.envs import metaworld as mw

MT10_NAMES = [
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
]


def scripted_reach_actions(obs: np.ndarray) -> np.ndarray:
    """Meta-World's own scripted reach policy on each row's 39-dim state."""
    policy = SawyerReachV3Policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Constant(s) may be too high": it is clipped anyway
        return np.stack([policy.get_action(row[: mw.STATE_DIM].astype(np.float64)) for row in obs])


@pytest.fixture(scope="module")
def mt10() -> Iterator[mw.MetaWorldVecEnv]:
    env = mw.make_metaworld_env("MT10", seed=0)
    yield env
    env.close()


# --- names and errors: nothing is built ------------------------------------------------------


@pytest.fixture
def no_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("goal generation must not run here")

    for benchmark in ("MT1", "MT10", "MT25", "MT50"):
        monkeypatch.setattr(metaworld, benchmark, refuse)
    mw.load_goal_tasks.cache_clear()


@pytest.mark.usefixtures("no_building")
def test_resolve_without_building() -> None:
    assert mw.resolve_metaworld_tasks("MT10") == MT10_NAMES
    assert resolve_task_names("MT10") == MT10_NAMES
    assert resolve_task_names("MT25")[:10] == MT10_NAMES and len(resolve_task_names("MT25")) == 25
    mt50 = resolve_task_names("MT50")
    assert len(mt50) == len(set(mt50)) == 50 and all(n.endswith("-v3") for n in mt50)
    assert resolve_task_names("MT1:reach-v3") == ["reach-v3"]
    assert resolve_task_names(" push-v3 , reach-v3 ") == ["push-v3", "reach-v3"]


@pytest.mark.usefixtures("no_building")
@pytest.mark.parametrize("spec", ["reach-v2", "MT1:reach-v2", "push-v3,reach-v2"])
def test_unknown_task_is_one_line_with_close_matches(spec: str) -> None:
    with pytest.raises(EnvError) as error:
        resolve_task_names(spec)
    message = str(error.value)
    assert "\n" not in message
    assert message == "unknown Meta-World task 'reach-v2'; did you mean: reach-v3, reach-wall-v3?"
    with pytest.raises(EnvError, match="reach-v3"):
        make_env(spec, seed=0)


@pytest.mark.usefixtures("no_building")
@pytest.mark.parametrize("spec", ["MT11", "MT1", "mt5", "MT10:reach-v3", "", "reach-v3,,push-v3"])
def test_bad_spec_lists_valid_forms(spec: str) -> None:
    with pytest.raises(EnvError) as error:
        resolve_task_names(spec)
    message = str(error.value)
    assert "\n" not in message and "MT10" in message and "MT1:<task>" in message


@pytest.mark.usefixtures("no_building")
def test_duplicate_tasks_are_rejected() -> None:
    with pytest.raises(EnvError, match="duplicate"):
        resolve_task_names("reach-v3,push-v3,reach-v3")


@pytest.mark.usefixtures("no_building")
@pytest.mark.parametrize(
    "options",
    [{"reward_version": "v3"}, {"vector": "threads"}, {"max_episode_steps": 0}],
)
def test_bad_options_fail_before_building(options: dict) -> None:
    with pytest.raises(EnvError):
        mw.make_metaworld_env("MT10", seed=0, **options)


def test_registry_default_episode_length_matches() -> None:
    assert METAWORLD_MAX_EPISODE_STEPS == mw.DEFAULT_MAX_EPISODE_STEPS == 500


def test_success_from_info_reads_final_info_where_done() -> None:
    # Env 0 continues (success 1), env 1 continues (no success), env 2 ended: its info is the
    # reset's (no success key for it) and its step's info is under final_info.
    info = {
        "success": np.array([1.0, 0.0, 0.0]),
        "_success": np.array([True, True, False]),
        "final_info": {"success": np.array([0.0, 0.0, 1.0]), "_success": np.array([0, 0, 1], bool)},
        "final_obs": np.array([None, None, np.zeros(3)], dtype=object),
    }
    done = np.array([False, False, True])
    np.testing.assert_array_equal(mw.success_from_info(info, done), [True, False, True])
    # All ended together (the time limit): no top-level success at all.
    info = {"final_info": {"success": np.array([1.0, 0.0]), "_success": np.ones(2, bool)}}
    np.testing.assert_array_equal(mw.success_from_info(info, np.ones(2, bool)), [True, False])


class RecordingEnv(gym.Env):
    """A stand-in task env: counts steps, succeeds from step 3 on, records the actions it gets."""

    def __init__(self, num_tasks: int, episode_length: int = 5) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (mw.STATE_DIM + num_tasks,))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (mw.ACTION_DIM,), dtype=np.float32)
        self.episode_length = episode_length
        self.actions: list[np.ndarray] = []
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple:
        self.actions.append(np.array(action))
        self.t += 1
        truncated = self.t >= self.episode_length
        return self._obs(), float(self.t), False, truncated, {"success": float(self.t >= 3)}

    def _obs(self) -> np.ndarray:
        return np.full(self.observation_space.shape, self.t, dtype=np.float32)


def test_vector_layer_clips_and_reads_final_step() -> None:
    envs = [RecordingEnv(2), RecordingEnv(2)]
    vec = mw.MetaWorldVecEnv([lambda e=e: e for e in envs], ["a-v3", "b-v3"], max_episode_steps=5)
    assert vec.reset()[:, 0].tolist() == [0, 0]
    for t in range(1, 6):
        step = vec.step(np.full((2, 4), -7.0 if t % 2 else 7.0))
        assert step.success.tolist() == [t >= 3] * 2
        assert step.truncated.tolist() == [t == 5] * 2 and not step.terminated.any()
    assert all(np.abs(a).max() == 1.0 for env in envs for a in env.actions)
    assert step.next_obs[:, 0].tolist() == [5, 5]  # the final observation of the episode
    assert step.obs[:, 0].tolist() == [0, 0]  # already the next episode's first observation
    assert step.reward.tolist() == [5.0, 5.0]
    vec.close()


# --- real environments --------------------------------------------------------------------


@pytest.mark.metaworld
def test_task_env_declares_unbounded_float32_obs() -> None:
    ((name, goals),) = mw.load_goal_tasks("MT1:reach-v3", 0)
    env = mw.make_task_env(metaworld.env_dict.ALL_V3_ENVIRONMENTS[name], goals, 0, 3, seed=0)
    space = env.observation_space
    assert space.dtype == np.float32 and space.shape == (42,)
    assert np.all(space.low == -np.inf) and np.all(space.high == np.inf)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and obs[-3:].tolist() == [1.0, 0.0, 0.0]
    env.close()


@pytest.mark.metaworld
def test_mt10_shapes_order_and_one_hot(mt10: mw.MetaWorldVecEnv) -> None:
    assert mt10.task_names == MT10_NAMES
    assert (mt10.num_tasks, mt10.obs_dim, mt10.action_dim) == (10, 49, 4)
    assert mt10.max_episode_steps == 500
    obs = mt10.reset()
    assert obs.shape == (10, 49) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:, 39:], np.eye(10, dtype=np.float32))
    assert np.all(np.abs(obs[:, 36:39]).sum(axis=1) > 0)  # the goal is observed, not zeroed
    step = mt10.step(np.random.default_rng(0).uniform(-1, 1, size=(10, 4)))
    for array in (step.obs, step.next_obs):
        assert array.shape == (10, 49) and array.dtype == np.float32
        np.testing.assert_array_equal(array[:, 39:], np.eye(10, dtype=np.float32))
    assert step.reward.shape == (10,) and step.reward.dtype == np.float32
    for flags in (step.terminated, step.truncated, step.success):
        assert flags.shape == (10,) and flags.dtype == bool and not flags.any()


@pytest.mark.metaworld
def test_mt1_shape() -> None:
    env = make_env("MT1:reach-v3", seed=0)
    obs = env.reset()
    assert obs.shape == (1, 40) and obs.dtype == np.float32 and obs[0, 39] == 1.0
    assert env.max_episode_steps == 500
    env.close()


@pytest.mark.metaworld
def test_same_seed_is_deterministic_different_seed_differs() -> None:
    spec = "reach-v3,push-v3"
    actions = np.random.default_rng(0).uniform(-1, 1, size=(120, 2, 4))
    runs = {}
    for label, seed in (("a", 0), ("b", 0), ("c", 1)):
        mw.load_goal_tasks.cache_clear()  # regenerate the goals: they must come from the seed
        with mw.make_metaworld_env(spec, seed=seed, max_episode_steps=40) as env:
            runs[label] = rollout(env, actions)
    (obs_a, rew_a), (obs_b, rew_b), (obs_c, _) = runs["a"], runs["b"], runs["c"]
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    goals_a = obs_a[[0, 40, 80], :, 36:39]  # [episode, T, 3]: the goal of each of 3 episodes
    assert len({tuple(g) for g in goals_a[:, 0]}) == 3  # a fresh goal drawn at each reset
    assert not np.array_equal(goals_a, obs_c[[0, 40, 80], :, 36:39])


def reach_goal_pool(seed: int) -> set[tuple[float, ...]]:
    """The 50 reach goals of a seed, as observed (float32); reach's rand_vec ends with the goal."""
    ((_, goals),) = mw.load_goal_tasks("MT1:reach-v3", seed)
    return {tuple(np.float32(pickle.loads(g.data)["rand_vec"][3:])) for g in goals}


@pytest.mark.metaworld
def test_goal_seed_keeps_the_goals_and_changes_the_draws() -> None:
    actions = np.zeros((60, 1, 4))
    with mw.make_metaworld_env("MT1:reach-v3", seed=0, max_episode_steps=10) as env:
        train_goals = rollout(env, actions)[0][::10, 0, 36:39]  # [episode, 3]
    with mw.make_metaworld_env("MT1:reach-v3", seed=7, goal_seed=0, max_episode_steps=10) as env:
        eval_goals = rollout(env, actions)[0][::10, 0, 36:39]
    pool = reach_goal_pool(0)
    assert {tuple(g) for g in eval_goals} <= pool and {tuple(g) for g in train_goals} <= pool
    assert not np.array_equal(eval_goals, train_goals)  # its own draws from the same 50 goals
    assert not {tuple(g) for g in eval_goals} <= reach_goal_pool(7)


@pytest.mark.metaworld
def test_async_matches_sync() -> None:
    actions = np.random.default_rng(1).uniform(-1, 1, size=(50, 2, 4))
    with mw.make_metaworld_env("reach-v3,push-v3", seed=0, max_episode_steps=20) as env:
        sync = rollout(env, actions)
    with mw.make_metaworld_env(
        "reach-v3,push-v3", seed=0, max_episode_steps=20, vector="async"
    ) as env:
        env.set_terminate_on_success(False)  # reaches the workers through the async API
        np.testing.assert_array_equal(rollout(env, actions)[0], sync[0])


@pytest.mark.metaworld
def test_sharded_matches_sync_step_for_step() -> None:
    """Three tasks in two worker shards (2 + 1 tasks): the same transitions as one sync env,
    across episode ends; rendering and the terminate-on-success switch reach the workers."""
    spec = "reach-v3,push-v3,door-open-v3"
    actions = np.random.default_rng(2).uniform(-1, 1, size=(45, 3, 4))

    def transitions(env) -> list[tuple]:
        env.reset()
        return [tuple(vars(env.step(action)).values()) for action in actions]

    with mw.make_metaworld_env(spec, seed=0, max_episode_steps=20) as env:
        sync = transitions(env)
    with mw.make_metaworld_env(
        spec, seed=0, max_episode_steps=20, vector="sharded", workers=2, render=True
    ) as env:
        assert (env.num_tasks, env.obs_dim) == (3, 39 + 3)
        assert env.task_names == spec.split(",")
        env.set_terminate_on_success(False)
        sharded = transitions(env)
        frame = env.render(2)  # door-open, in the second worker
        assert frame.shape[-1] == 3 and frame.std() > 0
    assert len(sharded) == len(sync)
    for ours, theirs in zip(sharded, sync, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.metaworld
def test_scripted_success_and_final_step_semantics() -> None:
    with mw.make_metaworld_env("MT1:reach-v3", seed=0, max_episode_steps=100) as env:
        obs = env.reset()
        successes = []
        for _ in range(100):
            previous = obs
            step = env.step(scripted_reach_actions(obs))
            successes.append(bool(step.success[0]))
            obs = step.obs
        assert any(successes[:-1])  # the underlying env reported success mid-episode
        assert step.truncated[0] and not step.terminated[0]
        # The last step's own info has no success: this one comes from final_info.
        assert step.success[0]
        # Frame stacking: a true successor repeats the previous frame in [18:36], the reset
        # observation repeats its own frame instead.
        np.testing.assert_allclose(step.next_obs[0, 18:36], previous[0, 0:18], atol=1e-6)
        np.testing.assert_array_equal(step.obs[0, 18:36], step.obs[0, 0:18])
        assert not np.allclose(step.next_obs[0, :3], step.obs[0, :3], atol=1e-3)
        assert step.reward[0] == pytest.approx(10.0)  # v2 reach reward at the goal


@pytest.mark.metaworld
def test_terminate_on_success_ends_the_episode() -> None:
    with mw.make_metaworld_env("MT1:reach-v3", seed=0) as env:
        env.set_terminate_on_success(True)
        obs = env.reset()
        ended_at = None
        for t in range(1, 201):
            step = env.step(scripted_reach_actions(obs))
            assert step.terminated[0] == step.success[0]
            obs = step.obs
            if step.terminated[0]:
                ended_at = t
                break
        assert ended_at is not None and not step.truncated[0]
        np.testing.assert_array_equal(step.obs[0, 18:36], step.obs[0, 0:18])  # reset already
        env.set_terminate_on_success(False)
        obs = env.reset()
        for _ in range(100):
            step = env.step(scripted_reach_actions(obs))
            obs = step.obs
            assert not step.terminated[0]
        assert step.success[0]


@pytest.mark.metaworld
def test_reward_versions_differ() -> None:
    actions = np.random.default_rng(2).uniform(-1, 1, size=(20, 1, 4))
    rewards = {}
    for version in ("v1", "v2"):
        with mw.make_metaworld_env("MT1:reach-v3", seed=0, reward_version=version) as env:
            obs, rewards[version] = rollout(env, actions)
    assert not np.allclose(rewards["v1"], rewards["v2"])


@pytest.mark.metaworld
def test_actions_are_clipped_and_long_episodes_work() -> None:
    actions = np.random.default_rng(3).uniform(-3, 3, size=(30, 1, 4))
    with mw.make_metaworld_env("MT1:reach-v3", seed=0) as env:
        obs_unit, rew_unit = rollout(env, np.clip(actions, -1, 1))
    with mw.make_metaworld_env("MT1:reach-v3", seed=0, max_episode_steps=510) as env:
        obs_big, rew_big = rollout(env, actions)
        np.testing.assert_array_equal(obs_big, obs_unit)
        np.testing.assert_array_equal(rew_big, rew_unit)
        for t in range(31, 511):  # past Meta-World's own 500-step limit without an error
            step = env.step(np.zeros((1, 4)))
            assert step.truncated[0] == (t == 510)
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros((2, 4)))


@pytest.mark.metaworld
def test_render() -> None:
    with mw.make_metaworld_env("MT1:reach-v3", seed=0) as env:
        with pytest.raises(EnvError):
            env.render(0)
    with mw.make_metaworld_env("MT1:reach-v3", seed=0, render=True, render_size=(64, 48)) as env:
        env.reset()
        frame = env.render(0)
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        assert frame.std() > 0
        with pytest.raises(IndexError):
            env.render(1)


@pytest.mark.slow
@pytest.mark.metaworld
def test_mt50_builds_and_steps() -> None:
    env = make_env("MT50", seed=0)
    assert env.num_tasks == 50 and env.obs_dim == 89
    obs = env.reset()
    assert obs.shape == (50, 89) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:, 39:], np.eye(50, dtype=np.float32))
    step = env.step(np.zeros((50, 4)))
    assert step.obs.shape == (50, 89) and not step.truncated.any()
    env.close()


# McLean et al. 2025's MT25 (their rainx0r/metaworld-algorithms builds "Meta-World/MT25", whose
# tasks are metaworld.env_dict.MT25_V3): MT10, then these 15.
MT25_NAMES = [
    *MT10_NAMES,
    "coffee-pull-v3",
    "pick-out-of-hole-v3",
    "disassemble-v3",
    "pick-place-wall-v3",
    "basketball-v3",
    "stick-pull-v3",
    "button-press-wall-v3",
    "faucet-open-v3",
    "door-lock-v3",
    "lever-pull-v3",
    "sweep-into-v3",
    "faucet-close-v3",
    "coffee-button-v3",
    "button-press-topdown-wall-v3",
    "dial-turn-v3",
]


@pytest.mark.slow
@pytest.mark.metaworld
def test_mt25_builds_its_25_tasks_and_steps() -> None:
    env = make_env("MT25", seed=0)
    assert env.task_names == MT25_NAMES and env.obs_dim == 39 + 25
    obs = env.reset()
    np.testing.assert_array_equal(obs[:, 39:], np.eye(25, dtype=np.float32))
    for _ in range(3):
        step = env.step(np.random.default_rng(0).uniform(-1, 1, size=(25, 4)))
        assert step.obs.shape == (25, 64) and np.isfinite(step.obs).all()
    env.close()
