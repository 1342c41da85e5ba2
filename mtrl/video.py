"""Episode videos for ``mtrl eval --video``: MP4 through imageio-ffmpeg (the ``video`` extra), GIF
through imageio alone. Several tasks give one file per task, named after the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtrl.errors import VideoError

FPS = 40  # Meta-World's control frequency is ~80 Hz; half speed is easier to watch


def write_videos(path: str | Path, frames_by_task: dict[str, list[np.ndarray]]) -> list[Path]:
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".gif"):
        raise VideoError(f"--video: use a .mp4 or .gif path, got '{path.name}'")
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise VideoError("--video needs imageio: pip install 'mtrl-suite[video]'") from None
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
