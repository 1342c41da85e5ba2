"""``mtrl report``: run directories -> the ablation table (Markdown, CSV, LaTeX) and figures (PNG).

Reports read only run directories: ``config.yaml`` for the method label and env, ``metrics.jsonl``
for everything measured. A run's score is its final evaluation's mean success rate over tasks (the
``final_eval`` record). Per method: the mean over seeds, a 95% percentile-bootstrap confidence
interval over seeds, and the interquartile mean over all (seed, task) scores, the aggregate rliable
(Agarwal et al. 2021) recommends for few runs; per task, the mean over seeds.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtrl.config import Config, ConfigError, load_config
from mtrl.logging import read_metrics

BOOTSTRAP_SAMPLES = 10_000
CONFLICT_KEYS = ("gradients/critic/cosine_mean", "gradients/critic/conflict_fraction")


def method_label(config: Config) -> str:
    """The run's method name in tables: ``label`` when the preset sets one, else its parts."""
    if config.label:
        return config.label
    agent = config.agent
    return f"{agent.algorithm} {agent.actor}/{agent.critic} {agent.critic_grad}/{agent.actor_grad}"


@dataclass
class Run:
    path: Path
    env: str
    label: str
    seed: int
    task_success: dict[str, float]  # the final evaluation, per task
    curve: list[tuple[int, float]]  # (step, mean success) of every evaluation
    conflict: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(np.mean(list(self.task_success.values())))


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run directories given directly or anywhere below the given directories."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"no such run directory: {path}")
        if (path / "config.yaml").is_file():
            found.append(path)
        else:
            found += sorted(p.parent for p in path.rglob("config.yaml"))
    if not found:
        raise ConfigError(
            f"no run directories (with config.yaml) under {', '.join(map(str, paths))}"
        )
    return list(dict.fromkeys(found))


def load_run(path: Path) -> Run | None:
    """A finished run; None when it has no final evaluation yet."""
    config = load_config(path / "config.yaml")
    records = read_metrics(path)
    finals = [r for r in records if r["kind"] == "final_eval"]
    if not finals:
        return None
    final = finals[-1]
    prefix, suffix = "tasks/", "/success_rate"
    task_success = {
        key[len(prefix) : -len(suffix)]: float(value)
        for key, value in final.items()
        if key.startswith(prefix) and key.endswith(suffix)
    }
    curve = [
        (int(r["step"]), float(r["eval/mean_success_rate"]))
        for r in records
        if r["kind"] in ("eval", "final_eval")
    ]
    conflict = {
        key: [(int(r["step"]), float(r[key])) for r in records if r["kind"] == "train" and key in r]
        for key in CONFLICT_KEYS
    }
    return Run(
        path, config.env.name, method_label(config), config.seed, task_success, curve, conflict
    )


def bootstrap_ci(
    scores: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``scores`` (resampling runs)."""
    if len(scores) < 2:
        return float(scores.mean()), float(scores.mean())
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), (samples, len(scores)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def interquartile_mean(values: np.ndarray) -> float:
    """Mean of the middle 50% (rliable's IQM): drops the lowest and highest quarter."""
    values = np.sort(values.ravel())
    cut = int(np.floor(0.25 * len(values)))
    return float(values[cut : len(values) - cut].mean())


@dataclass
class MethodRow:
    env: str
    label: str
    runs: list[Run]

    @property
    def scores(self) -> np.ndarray:
        return np.array([run.score for run in self.runs])

    def summary(self) -> dict:
        low, high = bootstrap_ci(self.scores)
        all_tasks = np.array([list(run.task_success.values()) for run in self.runs])
        return {
            "env": self.env,
            "method": self.label,
            "mean": float(self.scores.mean()),
            "ci_low": low,
            "ci_high": high,
            "iqm": interquartile_mean(all_tasks),
            "seeds": len(self.runs),
            "per_seed": {str(run.seed): run.score for run in self.runs},
            "per_task": {
                task: float(np.mean([run.task_success[task] for run in self.runs]))
                for task in self.runs[0].task_success
            },
        }


def group_runs(runs: list[Run]) -> list[MethodRow]:
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.env, run.label)].append(run)
    return [
        MethodRow(env, label, sorted(rs, key=lambda r: r.seed))
        for (env, label), rs in groups.items()
    ]


# ------------------------------------------------------------------------------------ tables
def _markdown(summaries: list[dict]) -> str:
    lines = [
        "| env | method | success (mean) | 95% CI | IQM | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['env']} | {s['method']} | {s['mean']:.3f} | [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"
            f" | {s['iqm']:.3f} | {s['seeds']} |"
        )
    return "\n".join(lines) + "\n"


def _per_task_markdown(summaries: list[dict]) -> str:
    tasks = list(dict.fromkeys(t for s in summaries for t in s["per_task"]))
    lines = ["| env | method | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
    for s in summaries:
        cells = [f"{s['per_task'][t]:.2f}" if t in s["per_task"] else "" for t in tasks]
        lines.append(f"| {s['env']} | {s['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char in "\\&%$#_{}":
        text = text.replace(char, "\\" + char)
    return text


def _latex(summaries: list[dict]) -> str:
    lines = [
        "\\begin{tabular}{llcccc}",
        "\\toprule",
        "Env & Method & Success & 95\\% CI & IQM & Seeds \\\\",
        "\\midrule",
    ]
    for s in summaries:
        lines.append(
            f"{_latex_escape(s['env'])} & {_latex_escape(s['method'])} & {s['mean']:.3f} & "
            f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}] & {s['iqm']:.3f} & {s['seeds']} \\\\"
        )
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, summaries: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env", "method", "mean", "ci_low", "ci_high", "iqm", "seeds"])
        for s in summaries:
            writer.writerow(
                [s["env"], s["method"], s["mean"], s["ci_low"], s["ci_high"], s["iqm"], s["seeds"]]
            )


def _write_per_task_csv(path: Path, summaries: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env", "method", "task", "success_rate"])
        for s in summaries:
            for task, value in s["per_task"].items():
                writer.writerow([s["env"], s["method"], task, value])


# ----------------------------------------------------------------------------------- figures
def _curve_band(
    curves: list[list[tuple[int, float]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% bootstrap band over seeds at the steps every seed evaluated."""
    steps = sorted(set.intersection(*(set(s for s, _ in curve) for curve in curves)))
    values = np.array([[dict(curve)[s] for s in steps] for curve in curves])  # [seeds, steps]
    bands = np.array([bootstrap_ci(values[:, k], samples=2000) for k in range(len(steps))])
    return np.array(steps), values.mean(0), bands[:, 0], bands[:, 1]


def _styles(count: int) -> list[dict]:
    """Distinct color/line-style pairs for up to 40 methods (tab20 colors, then dashed)."""
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors if count > 10 else [f"C{k}" for k in range(10)]
    return [
        {"color": colors[k % len(colors)], "linestyle": "-" if k < len(colors) else "--"}
        for k in range(count)
    ]


def _plot_curves(rows: list[MethodRow], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8 + (3 if len(rows) > 6 else 0), 4.5))
    for row, style in zip(rows, _styles(len(rows)), strict=True):
        steps, mean, low, high = _curve_band([run.curve for run in row.runs])
        if len(steps) == 0:
            continue
        ax.plot(steps, mean, label=f"{row.label} (n={len(row.runs)})", linewidth=1.5, **style)
        ax.fill_between(
            steps, low, high, color=style["color"], alpha=0.12 if len(rows) > 6 else 0.2
        )
    ax.set(
        xlabel="environment steps (per task)",
        ylabel="mean success rate (95% CI over seeds)",
        title=title,
        ylim=(-0.02, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_heatmap(summaries: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(t for s in summaries for t in s["per_task"]))
    grid = np.array([[s["per_task"].get(t, np.nan) for t in tasks] for s in summaries])
    fig, ax = plt.subplots(
        figsize=(max(5, 0.5 * len(tasks) + 3), max(2.5, 0.4 * len(summaries) + 1.5))
    )
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(summaries)), [s["method"] for s in summaries], fontsize=8)
    if grid.size <= 400:
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="w" if value < 0.5 else "k",
                )
    fig.colorbar(image, ax=ax, label="final success rate (mean over seeds)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_conflict(rows: list[MethodRow], path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    drawn = False
    for ax, key in zip(axes, CONFLICT_KEYS, strict=True):
        for row, style in zip(rows, _styles(len(rows)), strict=True):
            curves = [run.conflict.get(key, []) for run in row.runs]
            if not all(curves):
                continue
            steps, mean, low, high = _curve_band(curves)
            if len(steps) == 0:
                continue
            ax.plot(steps, mean, label=row.label, linewidth=1.2, **style)
            ax.fill_between(steps, low, high, color=style["color"], alpha=0.12)
            drawn = True
        ax.set(xlabel="environment steps (per task)", ylabel=key.split("/")[-1].replace("_", " "))
        ax.grid(alpha=0.3)
    if drawn:
        axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def make_report(paths: list[str | Path], out: str | Path) -> dict:
    """Writes the tables and figures under ``out``; returns {"summaries", "files", "skipped"}."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs, skipped = [], []
    for path in find_run_dirs(paths):
        run = load_run(path)
        (runs if run is not None else skipped).append(run if run is not None else path)
    if not runs:
        raise ConfigError("none of the runs has a final evaluation yet")
    rows = sorted(group_runs(runs), key=lambda r: (r.env, r.label))
    summaries = [row.summary() for row in rows]
    files = {
        "table.md": _markdown(summaries),
        "per_task.md": _per_task_markdown(summaries),
        "table.tex": _latex(summaries),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    _write_csv(out / "table.csv", summaries)
    _write_per_task_csv(out / "per_task.csv", summaries)
    (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    written = [out / name for name in (*files, "table.csv", "per_task.csv", "summary.json")]
    for env in dict.fromkeys(row.env for row in rows):
        env_rows = [row for row in rows if row.env == env]
        env_summaries = [s for s in summaries if s["env"] == env]
        tag = _slug(env)
        _plot_curves(env_rows, out / f"curves_{tag}.png", f"{env}: success rate during training")
        _plot_heatmap(env_summaries, out / f"per_task_{tag}.png", f"{env}: final success per task")
        written += [out / f"curves_{tag}.png", out / f"per_task_{tag}.png"]
        if _plot_conflict(
            env_rows, out / f"conflict_{tag}.png", f"{env}: critic gradient conflict"
        ):
            written.append(out / f"conflict_{tag}.png")
    return {"summaries": summaries, "files": written, "skipped": skipped}
