"""Episode videos for ``mtrl eval --video``: MP4 through imageio-ffmpeg (the ``video`` extra), GIF
through imageio alone. Several tasks give one file per task, named after the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtrl.errors import VideoError
from mtrl.extras import install_hint

FPS = 40  # Meta-World's control frequency is ~80 Hz; half speed is easier to watch


def check_video_path(path: str | Path) -> Path:
    """A video path that can be written (.mp4 or .gif, imageio installed), or a one-line
    VideoError: checked before an evaluation, so that a bad path does not cost its minutes."""
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise VideoError(f"--video: use a .mp4 or .gif path, got '{path.name}'")
    try:
        import imageio.v2  # noqa: F401
    except ImportError:
        raise VideoError(f"--video needs imageio: {install_hint('imageio')}") from None
    return path


def write_videos(path: str | Path, frames_by_task: dict[str, list[np.ndarray]]) -> list[Path]:
    path = check_video_path(path)
    import imageio.v2 as imageio

    written = []
    for task, frames in frames_by_task.items():
        if not frames:
            continue
        target = path if len(frames_by_task) == 1 else path.with_stem(f"{path.stem}_{task}")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if target.suffix.lower() == ".gif":
                imageio.mimsave(target, frames, duration=1000 / FPS, loop=0)
            else:
                imageio.mimsave(target, frames, fps=FPS, macro_block_size=1)
        except (ImportError, ValueError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
            raise VideoError(
                f"cannot write {target.name} ({first}); for MP4 install 'mtrl-suite[video]' "
                "or write a .gif"
            ) from None
        written.append(target)
    return written


class SampledFrames(list):
    """The frames a periodic evaluation keeps for its video: every ``stride``-th, shrunk by whole
    factors to at most ~``side`` pixels a side (an MT10 evaluation of 480 x 480 frames at every
    step would hold ~3 GB; this keeps an eighth of it)."""

    def __init__(self, stride: int = 2, side: int = 256) -> None:
        super().__init__()
        self.stride, self.side, self.seen = stride, side, 0

    def append(self, frame: np.ndarray) -> None:
        if self.seen % self.stride == 0:
            shrink = -(-max(frame.shape[:2]) // self.side)  # ceil: 480 -> 2, 64 -> 1
            super().append(np.ascontiguousarray(frame[::shrink, ::shrink]))
        self.seen += 1


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF of ``frames`` ([H, W, 3] uint8 each), looping."""
    import io

    try:
        import imageio.v2 as imageio
    except ImportError:
        raise VideoError(f"eval_video_every needs imageio: {install_hint('imageio')}") from None
    buffer = io.BytesIO()
    imageio.mimsave(buffer, frames, format="GIF", duration=1000 / fps, loop=0)
    return buffer.getvalue()
