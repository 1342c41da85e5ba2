"""`mtrl.analysis.stats`: hand-computed cases, and every estimator against rliable 1.2.0 on one score table.

rliable (a test dependency, the ``dev`` extra) resamples with ``np.random``'s global state through
arch; ``mtrl.analysis.stats`` with its own ``Generator``. Same estimator and same resampling scheme, so the
point estimates agree exactly and the interval endpoints within Monte Carlo error: with the
repetitions below the largest difference seen was about 0.005 (over 30 bootstrap seeds), and the
test allows 0.01.
"""

from __future__ import annotations

import numpy as np
import pytest

from mtrl.analysis import stats

TOLERANCE = 0.01  # interval endpoints, ours vs rliable's
EXACT = 1e-9  # point estimates


def _table(rng: np.random.Generator, a: float, b: float, shape=(10, 40)) -> np.ndarray:
    """Success rates of 50-episode final evaluations: multiples of 1/50 in [0, 1]."""
    return np.round(rng.beta(a, b, size=shape) * 50) / 50


_RNG = np.random.default_rng(20211208)
SCORES = {"A": _table(_RNG, 2.0, 1.0), "B": _table(_RNG, 1.0, 1.5)}
# Learning curves of A: [runs, tasks, steps], the final scores scaled down early in training.
CURVES = np.clip(
    SCORES["A"][..., None] * np.linspace(0.25, 1.0, 4) + _RNG.normal(0, 0.05, (10, 40, 4)), 0, 1
)
TAUS = stats.default_taus(21)


@pytest.fixture(scope="module")
def rliable():
    try:
        from rliable import library, metrics
    except Exception as error:  # pandas 3 breaks arch 7's import with a TypeError, not ImportError
        pytest.skip(
            f"rliable does not import ({type(error).__name__}: {error}); "
            "install the dev extra: pip install -e '.[dev]'"
        )
    state = np.random.get_state()  # rliable draws from the global state: leave it as found
    yield library, metrics
    np.random.set_state(state)


# ---------------------------------------------------------------------------- hand-computed
def test_aggregates_of_hand_computed_tables():
    assert stats.interquartile_mean(np.arange(8.0)) == pytest.approx(3.5)  # mean of 2, 3, 4, 5
    assert stats.interquartile_mean([[0.0, 1.0], [1.0, 100.0]]) == pytest.approx(1.0)
    assert stats.interquartile_mean([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(3.0)  # cuts 1 + 1
    table = [[1.0, 0.0, 0.5], [0.0, 0.0, 0.5]]  # task means 0.5, 0, 0.5
    assert stats.aggregate_mean(table) == pytest.approx(1 / 3)
    assert stats.aggregate_median(table) == pytest.approx(0.5)
    # Scores above the target count as the target: 1 - mean(1, 0.5, 0, 1).
    assert stats.optimality_gap([[1.0, 0.5], [0.0, 1.2]]) == pytest.approx(0.375)


def test_probability_of_improvement_of_hand_computed_cases():
    x, y = [[0.2], [0.6]], [[0.2], [0.4]]
    # Pairs (x, y): (0.2, 0.2) a tie = 1/2, (0.2, 0.4) = 0, (0.6, 0.2) = 1, (0.6, 0.4) = 1.
    assert stats.probability_of_improvement(x, y) == pytest.approx(2.5 / 4)
    assert stats.probability_of_improvement(y, x) == pytest.approx(1.5 / 4)
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)
    # Two tasks: the mean of the per-task probabilities (1 on the first, 0 on the second).
    assert stats.probability_of_improvement([[1.0, 0.0]], [[0.0, 1.0]]) == pytest.approx(0.5)
    # Different numbers of runs: X's 3 runs against Y's 1.
    assert stats.probability_of_improvement([[0.1], [0.5], [0.9]], [[0.5]]) == pytest.approx(0.5)


def test_performance_profile_of_a_tiny_table():
    table = [[0.0, 0.5], [1.0, 1.0]]
    profile = stats.score_distribution(table, [0.0, 0.5, 0.99, 1.0])
    assert profile.tolist() == [0.75, 0.5, 0.5, 0.0]  # strictly greater than tau
    point, low, high = stats.performance_profile(table, [0.0, 0.5], reps=200)
    assert point.tolist() == [0.75, 0.5] and np.all(low <= point) and np.all(point <= high)
    assert stats.default_taus(21)[7] == 0.35  # exactly: a success rate 7/20 is not above it


def test_the_bootstrap_resamples_seeds_within_each_task_independently():
    scores = np.arange(12.0).reshape(4, 3)  # every value tells its (run, task)
    resamples = stats.stratified_bootstrap([scores], lambda batch: batch, reps=300, seed=1)
    assert resamples.shape == (300, 4, 3)
    for task in range(3):  # each column holds only that task's runs
        assert set(np.unique(resamples[:, :, task])) <= set(scores[:, task])
    runs = (resamples - np.arange(3)) / 3  # the run index each cell came from
    assert np.any(runs[:, :, 0] != runs[:, :, 1])  # tasks are not resampled as whole seeds
    again = stats.stratified_bootstrap([scores], lambda batch: batch, reps=300, seed=1)
    assert np.array_equal(resamples, again)


def test_one_run_intervals_collapse_to_the_point():
    estimates = stats.aggregate_estimates([[0.0, 0.4, 0.7, 1.0]], reps=100)
    for e in estimates.values():
        assert e.low == e.point == e.high
    assert estimates["iqm"].point == pytest.approx(0.55)  # mean of 0.4 and 0.7
    assert estimates["optimality_gap"].point == pytest.approx(1 - 2.1 / 4)


def test_curves_are_the_aggregate_at_each_step():
    point, low, high = stats.curve_estimates(CURVES, "iqm", reps=200, seed=0)
    for step in range(CURVES.shape[-1]):
        e = stats.aggregate_estimates(CURVES[..., step], reps=200, seed=0)["iqm"]
        assert point[step] == pytest.approx(e.point, abs=EXACT)
    assert np.all(low <= point) and np.all(point <= high)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="reps must be >= 1"):
        stats.aggregate_estimates([[0.5]], reps=0)
    with pytest.raises(ValueError, match="different numbers of tasks"):
        stats.probability_of_improvement([[0.5, 0.5]], [[0.5]])
    with pytest.raises(ValueError, match="2-d score array"):
        stats.aggregate_mean([0.5, 0.5])


# ------------------------------------------------------------------------ against rliable
def _close(ours: np.ndarray, theirs: np.ndarray, tolerance: float) -> float:
    difference = float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs))))
    assert difference <= tolerance, difference
    return difference


def test_aggregates_equal_rliables(rliable):
    library, metrics = rliable

    def aggregates(scores):
        return np.array(
            [
                metrics.aggregate_iqm(scores),
                metrics.aggregate_mean(scores),
                metrics.aggregate_median(scores),
                metrics.aggregate_optimality_gap(scores),
            ]
        )

    np.random.seed(0)
    points, intervals = library.get_interval_estimates(SCORES, aggregates, reps=2000)
    for key, scores in SCORES.items():
        ours = stats.aggregate_estimates(scores, reps=2000, seed=0)
        assert list(ours) == ["iqm", "mean", "median", "optimality_gap"]
        _close([e.point for e in ours.values()], points[key], EXACT)
        _close([e.low for e in ours.values()], intervals[key][0], TOLERANCE)
        _close([e.high for e in ours.values()], intervals[key][1], TOLERANCE)


def test_probability_of_improvement_equals_rliables(rliable):
    import scipy.stats
    from rliable.library import StratifiedIndependentBootstrap

    library, metrics = rliable
    x, y = SCORES["A"], SCORES["B"]
    for a, b in ((x, y), (y, x), (x, x)):
        _close(
            stats.probability_of_improvement(a, b), metrics.probability_of_improvement(a, b), EXACT
        )

    # rliable's estimator calls scipy once per task, ~40 ms per resample here; for the interval,
    # rliable's bootstrap runs the same Mann-Whitney statistic vectorized over tasks, which equals
    # rliable's function on rliable's own resamples (checked first).
    def vectorized(a, b):
        u = scipy.stats.mannwhitneyu(a, b, axis=0, alternative="greater").statistic
        return np.mean(u / (len(a) * len(b)))

    np.random.seed(1)
    for (a, b), _ in StratifiedIndependentBootstrap(x, y).bootstrap(10):
        _close(vectorized(a, b), metrics.probability_of_improvement(a, b), EXACT)
        _close(
            stats.probability_of_improvement(a, b), metrics.probability_of_improvement(a, b), EXACT
        )

    np.random.seed(2)
    points, intervals = library.get_interval_estimates({"AB": (x, y)}, vectorized, reps=2000)
    ours = stats.probability_of_improvement_estimate(x, y, reps=2000, seed=2)
    _close(ours.point, points["AB"], EXACT)
    _close([ours.low, ours.high], intervals["AB"].ravel(), TOLERANCE)


def test_performance_profile_equals_rliables(rliable):
    library, _ = rliable
    np.random.seed(3)
    profiles, bands = library.create_performance_profile(SCORES, TAUS, reps=5000)
    for key, scores in SCORES.items():
        point, low, high = stats.performance_profile(scores, TAUS, reps=5000, seed=3)
        _close(point, profiles[key], EXACT)
        _close(low, bands[key][0], TOLERANCE)
        _close(high, bands[key][1], TOLERANCE)


def test_iqm_learning_curve_equals_rliables(rliable):
    library, metrics = rliable

    def iqm_per_step(scores):
        return np.array([metrics.aggregate_iqm(scores[..., k]) for k in range(scores.shape[-1])])

    np.random.seed(4)
    points, intervals = library.get_interval_estimates({"A": CURVES}, iqm_per_step, reps=2000)
    point, low, high = stats.curve_estimates(CURVES, "iqm", reps=2000, seed=4)
    _close(point, points["A"], EXACT)
    _close(low, intervals["A"][0], TOLERANCE)
    _close(high, intervals["A"][1], TOLERANCE)


def test_runs_to_separate_is_where_the_interval_reaches_the_null():
    # Effect 0.1 above 0.5, half-width 0.2 towards it at 4 runs: (0.2 / 0.1)^2 = 4x the runs.
    assert stats.runs_to_separate(stats.Estimate(0.6, 0.4, 0.75), runs=4) == pytest.approx(16.0)
    # Below the null the upper half-width counts; an interval that excludes it needs fewer runs.
    assert stats.runs_to_separate(stats.Estimate(0.3, 0.1, 0.4), runs=5) == pytest.approx(5 / 4)
    assert stats.runs_to_separate(stats.Estimate(0.5, 0.3, 0.7), runs=5) == float("inf")
    with pytest.raises(ValueError, match="runs"):
        stats.runs_to_separate(stats.Estimate(0.6, 0.6, 0.6), runs=1)


def test_runs_to_separate_predicts_a_coin_flip_separation_at_that_many_runs():
    """From a pilot of 4 runs, the predicted number of runs separates about half of new
    experiments of that size: the 1/sqrt(runs) scaling the estimate rests on holds for the
    stratified-bootstrap interval of P(X > Y)."""
    rng = np.random.default_rng(7)
    tasks, shift = 10, 0.12  # a small effect: ~10x the pilot's runs, so a wrong power would miss
    level = rng.uniform(-1, 1, tasks)

    def experiment(runs: int, seed: int) -> stats.Estimate:
        draw = np.random.default_rng(seed)
        x = level + shift + draw.normal(0, 1, (runs, tasks))
        y = level + draw.normal(0, 1, (runs, tasks))
        return stats.probability_of_improvement_estimate(x, y, reps=400, seed=seed)

    # The pilot's half-width, averaged over pilots so that one pilot's luck does not set the size.
    pilots = [experiment(4, 1000 + k) for k in range(40)]
    true_effect = float(np.mean([e.point for e in pilots])) - 0.5  # P(X > Y) - 0.5 of the pair
    half = float(np.mean([e.point - e.low for e in pilots]))
    needed = stats.runs_to_separate(
        stats.Estimate(0.5 + true_effect, 0.5 + true_effect - half, 1.0), 4
    )
    runs = int(round(needed))
    assert 20 <= runs <= 80  # far from the pilot's 4 (a linear rule would say ~13: 0.12 separate)
    separated = np.mean([experiment(runs, k).low > 0.5 for k in range(60)])
    assert 0.3 <= separated <= 0.7
