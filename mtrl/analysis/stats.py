"""Aggregate statistics over few seeds and many tasks, with stratified-bootstrap intervals.

Why these and not a mean over seeds with a t-interval: deep RL papers run 3-10 seeds, and Agarwal et
al. 2021 ("Deep Reinforcement Learning at the Edge of the Statistical Precipice", NeurIPS) show that
point estimates from so few runs mislead, that the mean is dominated by a few outlier tasks and the
median of task means is noisy, and that intervals over seeds alone are far too wide or too narrow
to be useful. They recommend, and their library rliable implements:

* the interquartile mean (IQM) of all (run, task) scores: robust to outliers like the median, but
  it uses half the scores instead of one, so its interval is much tighter;
* the optimality gap: how far the scores fall short of a target (here success 1.0), which does not
  reward going beyond it;
* stratified bootstrap intervals: the runs are resampled with replacement *within each task*, every
  task independently, so each resample keeps the benchmark's task mix and only the seed-to-seed
  randomness varies. That answers "what if we reran the same tasks with new seeds", the question a
  reader of an ablation table has;
* the probability of improvement P(X > Y): the chance that a run of X on a task beats a run of Y on
  that task (ties count half), averaged over tasks; it says whether a gain is consistent rather than
  large, and is insensitive to the score scale;
* performance profiles (the run-score distribution, the fraction of runs with score > tau), which
  show the whole distribution instead of one number.

This module computes them with numpy alone, so reports need no extra dependency; ``tests/
test_stats.py`` checks every number against rliable 1.2.0 on the same score table. The estimators
and resampling follow rliable's ``metrics`` and ``library`` modules (percentile intervals, 95% by
default, runs resampled per task, both methods resampled independently for P(X > Y)); only the
random stream differs (numpy's ``Generator`` here, the global ``np.random`` state there), so point
estimates agree exactly and interval endpoints agree up to Monte Carlo error, which shrinks with the
number of bootstrap repetitions.

Score matrices have rliable's layout: ``[runs, tasks]`` for one method (a run is a seed), and
``[runs, tasks, steps]`` for learning curves. With a single run there is nothing to resample: every
bootstrap replicate equals the data, so the interval collapses to the point estimate (the report
prints such intervals as "n/a").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Seed = int | np.random.Generator | None

DEFAULT_REPS = 2_000
"""Bootstrap repetitions by default: enough for CI endpoints stable to about 0.005 on success rates
in [0, 1]; rliable's examples use 50,000 for published figures."""

CONFIDENCE = 0.95
# Elements of working memory per chunk of bootstrap replicates (about 32 MB of float64).
_CHUNK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its (percentile-bootstrap) confidence interval."""

    point: float
    low: float
    high: float

    def as_tuple(self) -> tuple[float, float, float]:
        return self.point, self.low, self.high


# ------------------------------------------------------------------------------ aggregates
# Each batched aggregate maps scores [..., runs, tasks] to [...]: the leading axes are bootstrap
# replicates, so a whole chunk of replicates is one numpy call.


def _iqm(scores: np.ndarray) -> np.ndarray:
    """The 25% trimmed mean of all runs x tasks: the middle half of the scores, which stays put
    when a few runs or tasks are outliers yet uses far more of the data than a median."""
    flat = np.sort(scores.reshape(*scores.shape[:-2], -1), axis=-1)
    count = flat.shape[-1]
    cut = int(0.25 * count)  # floor, as scipy.stats.trim_mean cuts
    return flat[..., cut : count - cut].mean(axis=-1)


def _mean(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of each task's mean over runs (every task weighs the same even if a task
    has more runs)."""
    return scores.mean(axis=-2).mean(axis=-1)


def _median(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of each task's mean over runs: robust, but it rests on one or two task
    means and so has wide intervals with few tasks (why the IQM is preferred)."""
    return np.median(scores.mean(axis=-2), axis=-1)


def _optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """How far the scores fall short of ``gamma`` on average, scores above it counting as gamma:
    lower is better, and beating the target on one task cannot hide failing another."""
    return gamma - np.minimum(scores, gamma).mean(axis=(-2, -1))


AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": _iqm,
    "mean": _mean,
    "median": _median,
    "optimality_gap": _optimality_gap,
}
"""The aggregates the report gives for every method, each batched over leading axes."""

AGGREGATE_TITLES = {
    "iqm": "IQM",
    "mean": "Mean",
    "median": "Median",
    "optimality_gap": "Optimality gap",
}


def _matrix(scores: np.ndarray | Sequence, ndim: int = 2) -> np.ndarray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != ndim or 0 in array.shape:
        raise ValueError(f"expected a non-empty {ndim}-d score array, got shape {array.shape}")
    return array


def interquartile_mean(scores: np.ndarray | Sequence) -> float:
    """IQM of a [runs, tasks] matrix (any array: all its values are pooled)."""
    array = np.asarray(scores, dtype=np.float64)
    return float(_iqm(array.reshape(1, -1)))


def aggregate_mean(scores: np.ndarray | Sequence) -> float:
    return float(_mean(_matrix(scores)))


def aggregate_median(scores: np.ndarray | Sequence) -> float:
    return float(_median(_matrix(scores)))


def optimality_gap(scores: np.ndarray | Sequence, gamma: float = 1.0) -> float:
    return float(_optimality_gap(_matrix(scores), gamma))


# ------------------------------------------------------------------------------- bootstrap
def _rng(seed: Seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def stratified_bootstrap(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    reps: int = DEFAULT_REPS,
    seed: Seed = 0,
    work_per_rep: int | None = None,
) -> np.ndarray:
    """The bootstrap distribution of ``statistic`` over ``reps`` stratified resamples.

    Each array in ``samples`` is [runs, tasks, ...]; every one is resampled independently, and in
    each task column the runs are drawn with replacement from that task's own runs. Trailing axes
    (evaluation steps) travel with their run, so a resampled run is a whole learning curve; at
    each step that gives the same distribution as resampling every cell (rliable's scheme).
    ``statistic`` takes the resampled arrays batched as [replicates, runs, tasks, ...] and returns
    [replicates, ...]. Returns [reps, ...].
    """
    if reps < 1:
        raise ValueError(f"bootstrap reps must be >= 1, got {reps}")
    samples = [np.asarray(s, dtype=np.float64) for s in samples]
    rng = _rng(seed)
    per_rep = work_per_rep or sum(s.size for s in samples)
    chunk = max(1, min(reps, _CHUNK_ELEMENTS // max(1, per_rep)))
    parts = []
    done = 0
    while done < reps:
        size = min(chunk, reps - done)
        batch = []
        for sample in samples:
            runs, tasks = sample.shape[:2]
            rows = rng.integers(0, runs, size=(size, runs, tasks))
            batch.append(sample[rows, np.arange(tasks)])
        parts.append(np.asarray(statistic(*batch)))
        done += size
    return np.concatenate(parts, axis=0)


def percentile_interval(
    distribution: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of a bootstrap distribution along its first axis (linear
    interpolation between order statistics, as arch's ``conf_int(method="percentile")``)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(distribution, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def interval_estimates(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: Seed = 0,
    work_per_rep: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, low, high) of a batched ``statistic`` on ``samples``, as rliable's
    ``get_interval_estimates`` with the percentile method."""
    samples = [np.asarray(s, dtype=np.float64) for s in samples]
    point = np.asarray(statistic(*(s[None] for s in samples)))[0]
    distribution = stratified_bootstrap(samples, statistic, reps, seed, work_per_rep)
    low, high = percentile_interval(distribution, confidence)
    return point, low, high


def aggregate_estimates(
    scores: np.ndarray | Sequence,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: Seed = 0,
) -> dict[str, Estimate]:
    """IQM, mean, median and optimality gap of one method's [runs, tasks] scores, each with its
    stratified-bootstrap interval (one set of resamples serves all four)."""
    scores = _matrix(scores)

    def statistic(batch: np.ndarray) -> np.ndarray:
        return np.stack([fn(batch) for fn in AGGREGATES.values()], axis=-1)

    point, low, high = interval_estimates([scores], statistic, reps, confidence, seed)
    return {
        name: Estimate(float(point[k]), float(low[k]), float(high[k]))
        for k, name in enumerate(AGGREGATES)
    }


# ----------------------------------------------------------------- probability of improvement
def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Batched P(X > Y): x [..., n, tasks], y [..., m, tasks] -> [...]."""
    diff = x[..., :, None, :] - y[..., None, :, :]  # [..., n, m, tasks]
    wins = (diff > 0).mean(axis=(-3, -2)) + 0.5 * (diff == 0).mean(axis=(-3, -2))
    return wins.mean(axis=-1)


def probability_of_improvement(
    scores_x: np.ndarray | Sequence, scores_y: np.ndarray | Sequence
) -> float:
    """P(X > Y): on each task, the fraction of (run of X, run of Y) pairs where X scores higher,
    ties counting one half (the Mann-Whitney U statistic over n x m), then the mean over tasks.

    Per task it is a rank statistic, so it says how often X beats Y rather than by how much, and
    a handful of tasks with large margins cannot carry it; P(X > Y) + P(Y > X) = 1. Both matrices
    are [runs, tasks] over the same tasks in the same order; their numbers of runs may differ.
    """
    x, y = _matrix(scores_x), _matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"different numbers of tasks: {x.shape[1]} and {y.shape[1]}")
    return float(_improvement(x, y))


def probability_of_improvement_estimate(
    scores_x: np.ndarray | Sequence,
    scores_y: np.ndarray | Sequence,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: Seed = 0,
) -> Estimate:
    """P(X > Y) with a stratified-bootstrap interval, X's and Y's runs resampled independently
    within each task (what rliable does for a pair of score matrices)."""
    x, y = _matrix(scores_x), _matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"different numbers of tasks: {x.shape[1]} and {y.shape[1]}")
    point, low, high = interval_estimates(
        [x, y], _improvement, reps, confidence, seed, work_per_rep=2 * x.shape[0] * y.size
    )
    return Estimate(float(point), float(low), float(high))


def runs_to_separate(estimate: Estimate, runs: int, null: float = 0.5) -> float:
    """How many runs per method would make ``estimate``'s interval (made from ``runs`` runs)
    exclude ``null``, were the observed effect the true one: the answer to "these two do not
    separate yet; how many seeds would it take?".

    A bootstrap interval of an average over runs narrows as 1/sqrt(runs), so its half-width on the
    null's side, h, reaches the effect e = |point - null| at runs * (h / e)^2. With that many runs
    a new experiment separates about half the time (its estimate falls on either side of the bound
    equally often); about twice as many give 80% (((1.96 + 0.84) / 1.96)^2 = 2.04). Already
    separated: a number <= runs. No effect: inf. ``null`` is 0.5 for P(X > Y), 0 for a difference.
    """
    if runs < 2:
        raise ValueError(f"runs_to_separate needs an interval from >= 2 runs, got {runs}")
    effect = abs(estimate.point - null)
    half = (
        estimate.point - estimate.low if estimate.point >= null else estimate.high - estimate.point
    )
    if effect == 0.0:
        return float("inf")
    return runs * (half / effect) ** 2


# ------------------------------------------------------------------------ performance profile
def default_taus(count: int = 101) -> np.ndarray:
    """Thresholds for success rates: 0 to 1 in equal steps, each the double nearest k / (count - 1)
    (``linspace`` is off by one ulp at some, which would flip "success > tau" for a success rate
    of exactly that value, e.g. 7/20 against 0.35)."""
    return np.arange(count) / (count - 1)


def _profile(batch: np.ndarray, taus: np.ndarray) -> np.ndarray:
    flat = batch.reshape(*batch.shape[:-2], -1)
    return (flat[..., :, None] > taus).mean(axis=-2)


def score_distribution(scores: np.ndarray | Sequence, taus: np.ndarray | Sequence) -> np.ndarray:
    """The run-score distribution: for each tau, the fraction of all (run, task) scores > tau."""
    taus = np.asarray(taus, dtype=np.float64)
    return _profile(_matrix(scores)[None], taus)[0]


def performance_profile(
    scores: np.ndarray | Sequence,
    taus: np.ndarray | Sequence | None = None,
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: Seed = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile, low, high) at each tau: the run-score distribution with pointwise stratified-
    bootstrap bands (rliable's ``create_performance_profile`` with score distributions). A profile
    shows where methods differ (e.g. one solves more tasks outright, the other fails fewer),
    which an aggregate hides; pooling runs rather than averaging them per task first gives the
    lower-variance, unbiased curve the paper recommends."""
    scores = _matrix(scores)
    taus = default_taus() if taus is None else np.asarray(taus, dtype=np.float64)
    return interval_estimates(
        [scores],
        lambda batch: _profile(batch, taus),
        reps,
        confidence,
        seed,
        work_per_rep=scores.size * (len(taus) + 1),
    )


# --------------------------------------------------------------------------- learning curves
def curve_estimates(
    scores: np.ndarray | Sequence,
    aggregate: str = "iqm",
    reps: int = DEFAULT_REPS,
    confidence: float = CONFIDENCE,
    seed: Seed = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aggregate, low, high) at each evaluation step of [runs, tasks, steps] scores: the
    learning-curve version of the final-score aggregates (the paper plots IQM curves with
    stratified-bootstrap bands), so curves and tables answer the same question."""
    scores = _matrix(scores, ndim=3)
    fn = AGGREGATES[aggregate]
    return interval_estimates(
        [scores], lambda batch: fn(np.moveaxis(batch, -1, 1)), reps, confidence, seed
    )
