"""``mtrl report``'s tables: Markdown, CSV and LaTeX from the per-method summaries.

The writers see only plain data, the summaries of ``MethodRow.summary`` (env, method, mean and its
interval, IQM, seeds, tasks, the aggregates with their intervals, per-task means), the
probability-of-improvement rows and one protocol line per env, so that ``mtrl.analysis.report`` (loading,
grouping, protocol checks) imports this module and never the reverse. Files: ``table.{md,csv,tex}``
(mean success with its interval, IQM, seeds), ``per_task.{md,csv}``, ``aggregates.{md,csv,tex}``
(IQM, mean, median and optimality gap with their intervals) and
``probability_of_improvement.csv``. Intervals of a one-seed method collapse to the point: the CSV
files hold them as they are, the Markdown and LaTeX tables print "n/a".
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from mtrl.analysis import stats


def write_tables(
    out: Path, summaries: list[dict], improvement: list[dict], protocol_lines: dict[str, str]
) -> list[Path]:
    """Writes every table under ``out``; returns their paths. ``protocol_lines`` is the line
    printed under each env's Markdown tables (``mtrl.analysis.report.protocol_line``), by env."""
    files = {
        "table.md": _markdown(summaries, protocol_lines),
        "per_task.md": _per_task_markdown(summaries),
        "table.tex": _latex(summaries),
        "aggregates.md": _aggregates_markdown(summaries, protocol_lines),
        "aggregates.tex": _aggregates_latex(summaries),
    }
    for name, text in files.items():
        (out / name).write_text(text)
    _write_csv(out / "table.csv", summaries)
    _write_per_task_csv(out / "per_task.csv", summaries)
    _write_aggregates_csv(out / "aggregates.csv", summaries)
    _write_improvement_csv(out / "probability_of_improvement.csv", improvement)
    return [
        out / name
        for name in (
            *files,
            "table.csv",
            "per_task.csv",
            "aggregates.csv",
            "probability_of_improvement.csv",
        )
    ]


def _interval(point: float, low: float, high: float, seeds: int, digits: int = 3) -> str:
    if seeds < 2:
        return f"{point:.{digits}f} [n/a]"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _by_env(items: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for item in items:
        groups[item["env"]].append(item)
    return groups


def _markdown(summaries: list[dict], protocol_lines: dict[str, str]) -> str:
    blocks = []
    for env, env_summaries in _by_env(summaries).items():
        lines = [
            "| env | method | success (mean) | 95% CI | IQM | seeds | update time (x SAC) |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in env_summaries:
            ci = f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]" if s["seeds"] > 1 else "n/a (1 seed)"
            lines.append(
                f"| {s['env']} | {s['method']} | {s['mean']:.3f} | {ci} | {s['iqm']:.3f} | "
                f"{s['seeds']} | {_cost(s)} |"
            )
        lines += ["", protocol_lines[env], "", COST_NOTE]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


COST_NOTE = (
    "Update time: seconds per gradient update read from the runs' logged windows (median over "
    "windows, mean over seeds), relative to plain MT-SAC (mean gradients, shared bodies) in the "
    "same env on the same device, precision and processor (n/a (other hardware) where no SAC "
    "run shares a run's hardware); a run that shared its machine with other work reads slower, "
    "so compare rows that ran the same way."
)


def _cost(summary: dict) -> str:
    cost = summary.get("update_cost")
    if cost is None:
        return f"n/a ({summary['update_cost_note']})" if summary.get("update_cost_note") else "n/a"
    return f"{cost:.2f}x"


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


def _booktabs(header: list[str], rows: list[list[str]]) -> str:
    """A booktabs tabular: two left columns (env, method), the rest centred; cells as given."""
    lines = [
        "\\begin{tabular}{ll" + "c" * (len(header) - 2) + "}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
        *(" & ".join(row) + " \\\\" for row in rows),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    return "\n".join(lines) + "\n"


def _latex(summaries: list[dict]) -> str:
    rows = []
    for s in summaries:
        ci = f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}]" if s["seeds"] > 1 else "n/a"
        names = [_latex_escape(s["env"]), _latex_escape(s["method"])]
        cells = [f"{s['mean']:.3f}", ci, f"{s['iqm']:.3f}", str(s["seeds"])]
        rows.append([*names, *cells, _latex_escape(_cost(s))])
    return _booktabs(["Env", "Method", "Success", "95\\% CI", "IQM", "Seeds", "Update time"], rows)


def _write_csv(path: Path, summaries: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        columns = ["env", "method", "mean", "ci_low", "ci_high", "iqm", "seeds"]
        writer.writerow([*columns, "update_seconds", "update_cost"])
        for s in summaries:
            extra = [s.get("update_seconds"), s.get("update_cost")]
            writer.writerow([*(s[c] for c in columns), *("" if v is None else v for v in extra)])


def _write_per_task_csv(path: Path, summaries: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env", "method", "task", "success_rate"])
        for s in summaries:
            for task, value in s["per_task"].items():
                writer.writerow([s["env"], s["method"], task, value])


def _write_aggregates_csv(path: Path, summaries: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["env", "method", "seeds", "tasks"]
        for name in stats.AGGREGATES:
            header += [name, f"{name}_ci_low", f"{name}_ci_high"]
        writer.writerow(header)
        for s in summaries:
            row = [s["env"], s["method"], s["seeds"], s["tasks"]]
            for name in stats.AGGREGATES:
                a = s["aggregates"][name]
                row += [a["point"], a["low"], a["high"]]
            writer.writerow(row)


def _aggregates_markdown(summaries: list[dict], protocol_lines: dict[str, str]) -> str:
    titles = [f"{stats.AGGREGATE_TITLES[name]} [95% CI]" for name in stats.AGGREGATES]
    blocks = []
    for env, env_summaries in _by_env(summaries).items():
        lines = [
            f"| env | method | {' | '.join(titles)} | seeds | tasks |",
            "|---|---|" + "---|" * len(titles) + "---|---|",
        ]
        for s in env_summaries:
            cells = [
                _interval(**s["aggregates"][name], seeds=s["seeds"]) for name in stats.AGGREGATES
            ]
            lines.append(
                f"| {s['env']} | {s['method']} | {' | '.join(cells)} | {s['seeds']} | "
                f"{s['tasks']} |"
            )
        lines += ["", protocol_lines[env]]
        blocks.append("\n".join(lines))
    note = (
        "IQM, mean, median and optimality gap (to success 1.0; lower is better) of the final "
        "success rates over seeds x tasks; 95% stratified-bootstrap percentile intervals "
        "(seeds resampled within each task; Agarwal et al. 2021)."
    )
    return note + "\n\n" + "\n\n".join(blocks) + "\n"


def _aggregates_latex(summaries: list[dict]) -> str:
    titles = [_latex_escape(stats.AGGREGATE_TITLES[name]) for name in stats.AGGREGATES]
    rows = []
    for s in summaries:
        cells = []
        for name in stats.AGGREGATES:
            a = s["aggregates"][name]
            ci = f"[{a['low']:.3f}, {a['high']:.3f}]" if s["seeds"] > 1 else "[n/a]"
            cells.append(f"{a['point']:.3f} {{\\scriptsize {ci}}}")
        names = [_latex_escape(s["env"]), _latex_escape(s["method"])]
        rows.append([*names, *cells, str(s["seeds"]), str(s["tasks"])])
    return _booktabs(["Env", "Method", *titles, "Seeds", "Tasks"], rows)


def _write_improvement_csv(path: Path, improvement: list[dict]) -> None:
    columns = ["env", "method_x", "method_y", "probability", "ci_low", "ci_high", "tasks"]
    columns += ["runs", "runs_to_separate"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in improvement:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
