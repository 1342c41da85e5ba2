"""Where a run's numbers go: TensorBoard events, ``metrics.jsonl`` and a console progress bar.

JSONL is the record reports read (one flushed line per log event, so a killed run keeps every line
it wrote); TensorBoard is for looking. Keys are namespaced as CleanRL does (``losses/critic``,
``charts/env_steps_per_s``, ``tasks/<name>/success_rate``). A write the disk refuses raises
``OSError`` naming the file (``metrics.jsonl`` or ``tensorboard/``), for the trainer to stop on.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path
from typing import Any

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
SUPERSEDED_METRICS_FILE = "metrics.superseded.jsonl"  # records a resume or a fresh start set aside
TENSORBOARD_DIR = "tensorboard"


def _naming(error: OSError, path: Path) -> OSError:
    return OSError(error.errno, error.strerror or str(error), str(path))


def _quiet_tensorboard_threads() -> None:
    """TensorBoard writes in a thread that, when a write fails, prints a traceback and stores the
    error for the next ``add_scalar``/``flush`` to raise in the training thread. That second
    raise is the one that counts (one line from the trainer); the thread's traceback is dropped."""
    previous = threading.excepthook
    if getattr(previous, "_mtrl_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        thread_class = type(args.thread).__name__ if args.thread is not None else ""
        if thread_class == "_AsyncWriterThread" and issubclass(args.exc_type, OSError):
            return
        previous(args)

    hook._mtrl_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class RunLogger:
    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        start_step: int = 0,
        progress: bool = True,
        tracker: Any = None,
    ) -> None:
        """``tracker``: where the scalars also go (``mtrl.training.tracking.WandbRun``), or None."""
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when a run starts

        self.run_dir = run_dir
        self.tracker = tracker
        _quiet_tensorboard_threads()
        try:
            self.writer = SummaryWriter(
                log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=start_step
            )
        except OSError as error:
            raise _naming(error, run_dir / TENSORBOARD_DIR) from error
        try:
            self.metrics = open(run_dir / METRICS_FILE, "a", buffering=1)  # line-buffered
        except OSError as error:
            self.writer.close()
            raise _naming(error, run_dir / METRICS_FILE) from error
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
        try:
            for key, value in finite.items():
                if math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        except OSError as error:  # an earlier background write failed
            raise _naming(error, self.run_dir / TENSORBOARD_DIR) from error
        record: dict[str, Any] = {"step": step, "kind": kind}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in finite.items()})
        try:
            self.metrics.write(json.dumps(record) + "\n")
        except OSError as error:
            raise _naming(error, self.run_dir / METRICS_FILE) from error
        if self.tracker is not None:
            self.tracker.log(step, finite)

    def text(self, tag: str, text: str, step: int) -> None:
        """Text in TensorBoard's text tab (markdown: indented lines show as they are)."""
        self._tensorboard(lambda: self.writer.add_text(tag, text, step))

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings beside its results, in TensorBoard's hparams tab (its own run,
        ``tensorboard/hparams``, as TensorBoard keeps them)."""
        self._tensorboard(lambda: self.writer.add_hparams(hparams, metrics, run_name="hparams"))

    def animation(self, tag: str, gif: bytes, height: int, width: int, step: int) -> None:
        """An animated GIF in TensorBoard's images tab (it plays them as they are; the writer's
        own ``add_video`` needs moviepy to make one)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        summary = Summary(value=[Summary.Value(tag=tag, image=image)])
        self._tensorboard(lambda: self.writer._get_file_writer().add_summary(summary, step))

    def _tensorboard(self, write: Any) -> None:
        try:
            write()
        except OSError as error:
            raise _naming(error, self.run_dir / TENSORBOARD_DIR) from error

    def advance(self, steps: int, postfix: dict[str, str] | None = None) -> None:
        self.bar.update(steps)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    def message(self, text: str) -> None:
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        """Flushes and closes everything, also after a failed write; then raises the first
        ``OSError`` met, if any."""
        self.bar.close()
        failures: list[OSError] = []
        for name, close in (
            (TENSORBOARD_DIR, self.writer.close),
            (METRICS_FILE, self.metrics.close),
        ):
            try:
                close()
            except OSError as error:
                failures.append(_naming(error, self.run_dir / name))
        if failures:
            raise failures[0]


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
