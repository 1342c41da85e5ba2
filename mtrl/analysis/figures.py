"""``mtrl report``'s figures (matplotlib): learning curves, per-task heatmap, gradient conflict,
aggregate intervals, performance profile and probability of improvement.

The figures take plain data, the per-method summaries (``MethodRow.summary``), the
probability-of-improvement rows and, per method label, its seeds' curves or score matrix, so that
``mtrl.analysis.report`` (loading, grouping, protocol checks) imports this module and never the reverse.
matplotlib is imported inside each function: importing ``mtrl.analysis.report`` stays cheap, and the caller
picks the backend first (``make_report`` uses Agg). Each band and interval is a 95% stratified
bootstrap one (``mtrl.analysis.stats``) with the caller's repetitions and seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtrl.analysis import stats

PROFILE_TAUS = stats.default_taus(101)
"""The success-rate thresholds of the performance profiles."""

Curve = list[tuple[int, dict[str, float]]]
"""One run's (step, success per task) at every evaluation."""
Series = list[tuple[int, float]]
"""One run's (step, value) of one logged quantity."""


def _curve_scores(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """Steps every run evaluated and the scores [runs, tasks, steps] there (tasks every run has
    at every such step; a run without per-task values counts its mean as one task)."""
    tables = [{step: values for step, values in curve} for curve in curves]
    steps = sorted(set.intersection(*(set(t) for t in tables)))
    if not steps:
        return np.array([]), np.zeros((len(curves), 0, 0))
    tasks = set.intersection(*(set(t[s]) for t in tables for s in steps))
    order = [task for task in tables[0][steps[0]] if task in tasks]
    values = np.array([[[t[s][task] for s in steps] for task in order] for t in tables])
    return np.array(steps), values


def _mean_curves(curves: list[Series]) -> list[Curve]:
    """Each value as the one task "mean"."""
    return [[(step, {"mean": value}) for step, value in curve] for curve in curves]


def _curve_band(
    curves: list[Curve], aggregate: str, reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    steps, values = _curve_scores(curves)
    if len(steps) == 0 or values.shape[1] == 0:
        return np.array([]), np.array([]), np.array([]), np.array([])
    point, low, high = stats.curve_estimates(values, aggregate, reps=reps, seed=seed)
    return steps, point, low, high


METHODS_PER_PANEL = 8
"""At most this many methods' lines share a panel: more are split over panels of their own, each
with distinct colours (33 methods on one axes were a tangle of repeated colours)."""

Groups = dict[str, list[str]]
"""Named panels of method labels (``mtrl report --group``): a figure draws one panel, or one set
of panels, per group, a method may sit in several (the reference in each), and a method keeps its
colour across them."""

Panel = tuple[str, list[str], list[dict]]
"""One panel's title, its methods' labels and their line styles."""


def _panels(labels: list[str], groups: Groups | None = None) -> list[Panel]:
    """Without ``groups``: ``labels`` in order, split into as few panels as hold at most
    ``METHODS_PER_PANEL`` each, of near-equal sizes ("methods 9-16 of 33" over each when split).
    With them: a panel per group, of its labels present here, and the methods in no group after
    them; each method styled by its place in ``labels``, so it looks the same in every panel."""
    if groups:
        styles = dict(zip(labels, _styles(len(labels)), strict=True))
        named = [
            (name, [label for label in members if label in styles])
            for name, members in groups.items()
        ]
        grouped = {label for _, members in named for label in members}
        rest = [label for label in labels if label not in grouped]
        named += [("other methods", rest)] if rest else []
        return [(name, members, [styles[m] for m in members]) for name, members in named if members]
    count = max(1, -(-len(labels) // METHODS_PER_PANEL))
    bounds = np.linspace(0, len(labels), count + 1).round().astype(int)
    panels = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        title = f"methods {a + 1}-{b} of {len(labels)}" if count > 1 else ""
        panels.append((title, labels[a:b], _styles(b - a)))
    return panels


def _save(fig, path: Path, title: str | None = None) -> None:
    """Layout and file (nothing cut at the edges), then the figure is closed; ``title`` above
    all panels (above the laid-out axes, where a tall figure's panels would cover it)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.0, va="bottom")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _styles(count: int) -> list[dict]:
    """Distinct color/line-style pairs for up to 40 methods (tab20 colors, then dashed)."""
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors if count > 10 else [f"C{k}" for k in range(10)]
    return [
        {"color": colors[k % len(colors)], "linestyle": "-" if k < len(colors) else "--"}
        for k in range(count)
    ]


def _finish(fig, ax, count: int, path: Path) -> None:
    """Grid, legend, layout, file: the last steps of every line plot."""
    ax.grid(alpha=0.3)
    _legend(ax, count)
    _save(fig, path)


def _legend(ax, count: int) -> None:
    """Beside the axes, in columns of at most 30 entries (many methods in one sweep)."""
    ax.legend(
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        ncol=-(-count // 30),
    )


def plot_curves(
    curves: dict[str, list[tuple[Curve, Series]]],
    path: Path,
    title: str,
    reps: int,
    seed: int,
    unfinished: set[str] = frozenset(),
    groups: Groups | None = None,
) -> None:
    """IQM success over seeds x tasks at each evaluation, with its band, a line per method (a
    panel per ``METHODS_PER_PANEL`` methods, or per group of ``groups``). ``curves``: method
    label -> per seed (success per task, mean success) at every evaluation; a method where some
    seed has no per-task values is drawn from the means. The curves of ``unfinished`` methods
    (runs without a final evaluation yet) end in an open circle: where they stand, not where
    they will end."""
    import matplotlib.pyplot as plt

    panels = _panels(list(curves), groups)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, 0.8 + 3.6 * len(panels)), squeeze=False, sharex=True
    )
    for ax, (panel_title, labels, styles) in zip(axes[:, 0], panels, strict=True):
        for label, style in zip(labels, styles, strict=True):
            seeds = curves[label]
            task_curves = [task_curve for task_curve, _ in seeds]
            if not all(any(values for _, values in curve) for curve in task_curves):
                task_curves = _mean_curves([curve for _, curve in seeds])
            steps, iqm, low, high = _curve_band(task_curves, "iqm", reps, seed)
            if len(steps) == 0:
                continue
            ax.plot(steps, iqm, label=f"{label} (n={len(seeds)})", linewidth=1.5, **style)
            ax.fill_between(steps, low, high, color=style["color"], alpha=0.15)
            if label in unfinished:
                ax.plot(steps[-1:], iqm[-1:], "o", mfc="white", color=style["color"], ms=7)
        ax.set(ylabel="IQM success rate\n(95% bootstrap CI)", ylim=(-0.02, 1.02))
        ax.set_title(panel_title, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        _legend(ax, len(labels))
    axes[-1, 0].set_xlabel("environment steps (per task)")
    _save(fig, path, title)


def plot_heatmap(summaries: list[dict], path: Path, title: str) -> None:
    """Final success per task (mean over seeds), a row per method."""
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(t for s in summaries for t in s["per_task"]))
    grid = np.array([[s["per_task"].get(t, np.nan) for t in tasks] for s in summaries])
    fig, ax = plt.subplots(
        figsize=(max(6, 0.55 * len(tasks) + 4), max(3.2, 0.42 * len(summaries) + 2))
    )
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(len(summaries)), [s["method"] for s in summaries], fontsize=9)
    if grid.size <= 400:
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="w" if value < 0.5 else "k",
                )
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("final success rate\n(mean over seeds)", fontsize=9)
    bar.ax.tick_params(labelsize=8)
    ax.set_title(title)
    _save(fig, path)


STATISTIC_WINDOWS = 25
"""Logged statistics are drawn as each run's means over this many equal windows of training
(4k steps per task of a 100k run): diagnostics logged every 1,000 updates swing from one to the
next, and seven methods' raw lines on one axes were a tangle."""


def _windowed(curves: list[Series], end: float, windows: int) -> list[Series]:
    """Each run's (window centre, mean of its values in the window) over ``windows`` equal
    windows of (0, ``end``]; a window where a run logged nothing is left out of that run."""
    edges = np.linspace(0.0, end, windows + 1)
    windowed = []
    for curve in curves:
        steps = np.array([step for step, _ in curve], dtype=float)
        values = np.array([value for _, value in curve], dtype=float)
        index = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, windows - 1)
        windowed.append(
            [
                (int(round((edges[k] + edges[k + 1]) / 2)), float(values[index == k].mean()))
                for k in range(windows)
                if (index == k).any()
            ]
        )
    return windowed


def plot_gradient_statistics(
    series: dict[str, dict[str, list[Series]]],
    path: Path,
    title: str,
    reps: int,
    seed: int,
    aggregate: str = "mean",
    columns: int = 3,
    groups: Groups | None = None,
    windows: int = STATISTIC_WINDOWS,
) -> bool:
    """The ``aggregate`` ("mean", "iqm") over seeds of logged training statistics (gradients,
    plasticity), with bands, a panel each (rows of at most ``columns``), the whole set of panels
    once per ``METHODS_PER_PANEL`` methods or per group of ``groups``. Where runs logged more
    points than ``windows``, each run is first averaged over ``windows`` equal windows of the
    longest run's steps (the title says how wide). ``series``: logged key -> method label -> per
    seed (step, value) (every label under every key; a method is left out of a panel when a seed
    logged nothing). Writes nothing and returns False when no method has data."""
    import matplotlib.pyplot as plt

    columns = min(columns, len(series))
    key_rows = -(-len(series) // columns)
    panels = _panels(list(next(iter(series.values()))), groups)
    every = [curve for methods in series.values() for runs in methods.values() for curve in runs]
    end = max((step for curve in every for step, _ in curve), default=0)
    window = windows and max((len(curve) for curve in every), default=0) > windows
    rows = key_rows * len(panels)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    drawn = False
    for g, (panel_title, labels, styles) in enumerate(panels):
        row_axes = axes[g * key_rows : (g + 1) * key_rows].ravel()
        for ax, (key, methods) in zip(row_axes, series.items(), strict=False):
            for label, style in zip(labels, styles, strict=True):
                curves = methods[label]
                if not all(curves):
                    continue
                if window:
                    curves = _windowed(curves, end, windows)
                steps, mean, low, high = _curve_band(_mean_curves(curves), aggregate, reps, seed)
                if len(steps) == 0:
                    continue
                ax.plot(steps, mean, label=label, linewidth=1.2, **style)
                ax.fill_between(steps, low, high, color=style["color"], alpha=0.12)
                drawn = True
            role, name = key.split("/")[-2:]
            ax.set(xlabel="environment steps (per task)", ylabel=f"{role} {name.replace('_', ' ')}")
            ax.grid(alpha=0.3)
            _log_axis_if_wide(ax)
        for ax in row_axes[len(series) :]:
            ax.axis("off")
        row_axes[0].set_title(panel_title, fontsize=9, loc="left")
        if any(ax.get_lines() for ax in row_axes):
            handles, legend_labels = next(
                ax for ax in row_axes if ax.get_lines()
            ).get_legend_handles_labels()
            row_axes[columns - 1].legend(
                handles, legend_labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                frameon=False,
            )  # fmt: skip
    if drawn:
        if window:
            title += f" (each run's mean over windows of {end / windows:,.0f} steps)"
        _save(fig, path, title)
    else:
        plt.close(fig)
    return drawn


WIDE_DECADES = 2.0
"""A panel whose drawn values are all positive and span more than this many decades gets a log
axis: the critic's curvature grows ~100-fold over a Meta-World run, and on a linear axis its first
quarter, and any arm far below the others, sat flat on zero."""


def _log_axis_if_wide(ax) -> None:
    values = np.concatenate(
        [np.asarray(line.get_ydata(), float) for line in ax.get_lines()] or [[]]
    )
    if len(values) and values.min() > 0 and np.log10(values.max() / values.min()) > WIDE_DECADES:
        ax.set_yscale("log")


def plot_aggregates(summaries: list[dict], path: Path, title: str) -> None:
    """rliable's interval-estimate figure: a panel per aggregate, a row per method, the 95%
    interval as a bar and the point estimate as a tick."""
    import matplotlib.pyplot as plt

    names = list(stats.AGGREGATES)
    styles = _styles(len(summaries))
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(3.4 * len(names), max(2.4, 1.4 + 0.4 * len(summaries))),
        squeeze=False,
    )
    for ax, name in zip(axes[0], names, strict=True):
        for k, (s, style) in enumerate(zip(summaries, styles, strict=True)):
            a = s["aggregates"][name]
            ax.barh(
                k, a["high"] - a["low"], left=a["low"], height=0.6, color=style["color"], alpha=0.75
            )
            ax.vlines(a["point"], k - 0.3, k + 0.3, color="k", linewidth=1.5)
        ax.set_yticks(
            range(len(summaries)), [s["method"] for s in summaries] if ax is axes[0][0] else []
        )
        ax.invert_yaxis()
        ax.set_title(stats.AGGREGATE_TITLES[name] + (" (lower is better)" if "gap" in name else ""))
        ax.set_xlabel("success rate")
        ax.margins(x=0.08)
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path, title)


def plot_profile(
    scores: dict[str, np.ndarray], path: Path, title: str, reps: int, seed: int
) -> dict[str, dict]:
    """Performance profiles (the fraction of seed x task scores above each of ``PROFILE_TAUS``)
    with bands, a line per method. ``scores``: method label -> final success [seeds, tasks].
    Returns, per label, the profile and its band's low and high ends."""
    import matplotlib.pyplot as plt

    profiles = {}
    count = len(scores)
    fig, ax = plt.subplots(figsize=(7 + (3 * -(-count // 30) if count > 6 else 0), 4.5))
    for (label, matrix), style in zip(scores.items(), _styles(count), strict=True):
        profile, low, high = stats.performance_profile(matrix, PROFILE_TAUS, reps=reps, seed=seed)
        profiles[label] = {"profile": profile, "low": low, "high": high}
        ax.plot(PROFILE_TAUS, profile, label=label, linewidth=1.5, **style)
        ax.fill_between(PROFILE_TAUS, low, high, color=style["color"], alpha=0.15)
    ax.set(
        xlabel=r"final success rate threshold $\tau$",
        ylabel=r"fraction of runs x tasks with success $> \tau$",
        title=title,
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
    )
    _finish(fig, ax, count, path)
    return profiles


def plot_improvement(summaries: list[dict], improvement: list[dict], path: Path) -> None:
    """P(row > column) per env as a matrix (every ordered pair), intervals printed where the
    cells are large enough to hold them; the methods (rows and columns) in ``summaries``' order.
    A pair with a one-seed method prints "1 seed" in place of its interval: that interval
    resamples the other method's seeds alone, so it reads narrower than the comparison is."""
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(s["env"] for s in summaries))
    sizes = [sum(s["env"] == env for s in summaries) for env in envs]
    width = max(sizes)
    cell = 0.8 if width <= 12 else 0.22  # inches: room for the intervals, or just the colors
    fig, axes = plt.subplots(
        1,
        len(envs),
        figsize=(len(envs) * (3 + cell * width), 2.5 + cell * width),
        squeeze=False,
    )
    for ax, env in zip(axes[0], envs, strict=True):
        labels = [s["method"] for s in summaries if s["env"] == env]
        grid = np.full((len(labels), len(labels)), np.nan)
        text = {}
        for item in (i for i in improvement if i["env"] == env):
            a, b = labels.index(item["method_x"]), labels.index(item["method_y"])
            grid[a, b] = item["probability"]
            interval = (
                f"[{item['ci_low']:.2f}, {item['ci_high']:.2f}]" if item["runs"] > 1 else "(1 seed)"
            )
            text[a, b] = f"{item['probability']:.2f}\n{interval}"
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdBu", aspect="auto")
        if len(labels) <= 12:
            for (a, b), label in text.items():
                ax.text(b, a, label, ha="center", va="center", fontsize=6)
        ticks = range(len(labels))
        ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.set(xlabel="Y", ylabel="X", title=f"{env}: P(X > Y) [95% CI]")
        fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path)
