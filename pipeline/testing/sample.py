"""The bundled sample: short videos made deterministically (no downloaded media).

``python -m pipeline.testing.sample OUT_DIR`` writes them; the same bytes on every run of the same PyAV build.
``python -m pipeline.testing.sample OUT_DIR --bids DATASET`` also writes a one-run BIDS dataset whose
subject watched them (``make_bids``), to try ``pipeline.align`` on.
"""

from __future__ import annotations

import sys
import typing as tp
from pathlib import Path

import numpy as np

SAMPLES: dict[str, dict[str, tp.Any]] = {
    "drift_25fps.mp4": dict(fps=25, seconds=3.0, width=96, height=64, audio=False),
    "bars_12fps.mp4": dict(fps=12, seconds=2.5, width=80, height=48, audio=False),
    "orbit_30fps_audio.mp4": dict(fps=30, seconds=4.0, width=128, height=72, audio=True),
}


def frame_image(k: int, fps: float, width: int, height: int) -> np.ndarray:
    """Frame k: drifting colour gradients plus a moving square, so every frame differs."""
    t = k / fps
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 127 + 120 * np.sin(xx / width * 6.3 + 2.0 * t)
    img[..., 1] = 127 + 120 * np.sin(yy / height * 6.3 - 3.0 * t)
    img[..., 2] = 127 + 120 * np.sin((xx + yy) / (width + height) * 9.4 + 1.3 * t)
    side = max(4, min(width, height) // 4)
    cx = int((width - side) * (0.5 + 0.45 * np.sin(1.7 * t)))
    cy = int((height - side) * (0.5 + 0.45 * np.cos(1.1 * t)))
    img[cy : cy + side, cx : cx + side] = (255, 255, 255)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_video(
    path: str | Path,
    *,
    fps: int,
    seconds: float,
    width: int,
    height: int,
    audio: bool = False,
    frame: tp.Callable[[int, float, int, int], np.ndarray] = frame_image,
) -> Path:
    """Encode an H.264 (yuv420p) MP4, single-threaded so that the bytes are reproducible."""
    import av

    path = Path(path)
    n_frames = int(round(fps * seconds))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "threads": "1", "preset": "fast"}
        astream = None
        if audio:
            astream = container.add_stream("aac", rate=44_100)
            astream.layout = "mono"
        for k in range(n_frames):
            packet_frame = av.VideoFrame.from_ndarray(frame(k, fps, width, height), format="rgb24")
            container.mux(stream.encode(packet_frame))
        container.mux(stream.encode(None))
        if astream is not None:
            rate, size = 44_100, 1024
            total = int(rate * seconds)
            for start in range(0, total, size):
                n = min(size, total - start)
                tt = (start + np.arange(n)) / rate
                tone = (0.2 * np.sin(2 * np.pi * (220 + 110 * tt) * tt)).astype(np.float32)
                aframe = av.AudioFrame.from_ndarray(tone[None, :], format="fltp", layout="mono")
                aframe.sample_rate = rate
                aframe.pts = start
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))
    return path


def make_samples(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, spec in SAMPLES.items():
        target = folder / name
        if not target.exists():
            tmp = folder / f".{name}.part.mp4"
            write_video(tmp, **spec)
            tmp.rename(target)
        out.append(target)
    return out


BIDS_TR = 1.49
BIDS_EVENTS = [("drift_25fps.mp4", 2.0, 3.0), ("bars_12fps.mp4", 8.0, 2.5), ("orbit_30fps_audio.mp4", 13.5, "n/a")]
"""The sample run: (stimulus, onset s, duration s or n/a: to the video's end), TR 1.49 s, 16 volumes."""


def make_bids(root: str | Path, videos: list[Path]) -> Path:
    """A BIDS dataset of one subject and one run watching the sample videos (copied into ``stimuli/``):
    ``events.tsv`` and a bold sidecar with ``RepetitionTime`` and ``NumberOfVolumes`` (no images)."""
    import json
    import shutil

    root = Path(root)
    func = root / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    (root / "stimuli").mkdir(exist_ok=True)
    by_name = {v.name: v for v in videos}
    for name, _, _ in BIDS_EVENTS:
        shutil.copy(by_name[name], root / "stimuli" / name)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "pipeline sample", "BIDSVersion": "1.10.0"}))
    bold = {"RepetitionTime": BIDS_TR, "NumberOfVolumes": 16, "TaskName": "watch"}
    (func / "sub-01_task-watch_run-1_bold.json").write_text(json.dumps(bold))
    rows = ["onset\tduration\tstim_file\ttrial_type"]
    rows += [f"{onset}\t{duration}\t{name}\tmovie" for name, onset, duration in BIDS_EVENTS]
    (func / "sub-01_task-watch_run-1_events.tsv").write_text("\n".join(rows) + "\n")
    return root


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--bids"]
    made = make_samples(args[0] if args else "sample_videos")
    for p in made:
        print(p)
    if "--bids" in sys.argv:
        print(make_bids(args[1] if len(args) > 1 else "sample_bids", made))
