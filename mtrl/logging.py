"""Where a run's numbers go: TensorBoard events, ``metrics.jsonl`` and a console progress bar.

JSONL is the record reports read (one flushed line per log event, so a killed run keeps every line
it wrote); TensorBoard is for looking. Keys are namespaced as CleanRL does (``losses/critic``,
``charts/env_steps_per_s``, ``tasks/<name>/success_rate``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


class RunLogger:
    def __init__(
        self, run_dir: Path, total_steps: int, start_step: int = 0, progress: bool = True
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when a run starts

        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step)
        self.metrics = open(run_dir / METRICS_FILE, "a", buffering=1)  # line-buffered
        self.bar = tqdm(
            total=total_steps,
            initial=start_step,
            disable=not progress,
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0.05,
        )

    def log(self, step: int, scalars: dict[str, float], kind: str = "train") -> None:
        finite = {k: float(v) for k, v in scalars.items()}
        for key, value in finite.items():
            if math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        record: dict[str, Any] = {"step": step, "kind": kind}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in finite.items()})
        self.metrics.write(json.dumps(record) + "\n")

    def advance(self, steps: int, postfix: dict[str, str] | None = None) -> None:
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def message(self, text: str) -> None:
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        self.writer.flush()
        self.writer.close()
        self.metrics.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run, skipping a torn last line a kill may have left."""
    records = []
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
