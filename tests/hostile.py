"""Hostile inputs: the odd and broken files a real corpus holds, made with the ffmpeg that imageio-ffmpeg ships.

``make_hostile(folder, good)`` writes them into ``folder`` and returns what each must do under a launch
(``Expect``): be embedded (with its number of output steps at 2 Hz), be a duplicate of another file, or
fail with a message naming what is wrong. ``good`` is a sound sample video used for copies and cuts.
docs/faults.md's "Bad input" table states the same behaviours.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Expect:
    outcome: str
    """``embedded``, ``duplicate`` or ``failed``."""
    detail: str = ""
    """embedded: ``WxH`` as displayed (or ""); duplicate: the file it repeats; failed: part of the message."""
    steps: int | None = None
    """embedded: output steps at 2 Hz."""


def ffmpeg() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _run(*args: str) -> None:
    subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _testsrc(size: str, rate: int, seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def _x264(pix_fmt: str = "yuv420p") -> list[str]:
    return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix_fmt]


def make_hostile(folder: Path, good: Path) -> dict[str, Expect]:
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Expect] = {}

    def path(name: str) -> str:
        return str(folder / name)

    # --- broken files: each fails alone, with its reason ---
    (folder / "zero_bytes.mp4").write_bytes(b"")
    out["zero_bytes.mp4"] = Expect("failed", "empty file")
    (folder / "text_file.mp4").write_text("this is a README someone saved as .mp4\n")
    out["text_file.mp4"] = Expect("failed", "cannot open as a video")
    data = good.read_bytes()
    (folder / "truncated_moov_lost.mp4").write_bytes(data[: len(data) // 2])
    out["truncated_moov_lost.mp4"] = Expect("failed", "cannot open as a video")
    _run(*_testsrc("96x64", 25, 4), *_x264(), "-movflags", "+faststart", path("faststart.tmp.mp4"))
    data = (folder / "faststart.tmp.mp4").read_bytes()
    (folder / "truncated_mid_stream.mp4").write_bytes(data[: len(data) // 2])
    os.unlink(folder / "faststart.tmp.mp4")
    out["truncated_mid_stream.mp4"] = Expect("failed", "truncated")
    _run("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", path("audio_only.mp4"))
    out["audio_only.mp4"] = Expect("failed", "no video stream")
    os.symlink(folder / "does_not_exist.mp4", folder / "dangling_link.mp4")
    out["dangling_link.mp4"] = Expect("failed", "dangling symlink")

    # --- odd but sound: embedded ---
    _run(*_testsrc("96x64", 25, 3), *_x264(), path("no_audio.mp4"))
    out["no_audio.mp4"] = Expect("embedded", "96x64", 6)
    _run(
        *_testsrc("96x64", 30, 2),
        "-vf",
        "setpts='if(lt(N,30),2*N,30+N)/30/TB'",
        "-fps_mode",
        "vfr",
        *_x264(),
        path("variable_frame_rate.mp4"),
    )
    out["variable_frame_rate.mp4"] = Expect("embedded", "96x64", 6)
    _run(*_testsrc("96x64", 25, 2), *_x264(), path("rotate.tmp.mp4"))
    _run("-display_rotation", "90", "-i", path("rotate.tmp.mp4"), "-c", "copy", path("rotated_90.mp4"))
    os.unlink(folder / "rotate.tmp.mp4")
    out["rotated_90.mp4"] = Expect("embedded", "64x96", 4)
    _run(*_testsrc("96x64", 25, 1), "-frames:v", "1", *_x264(), path("one_frame.mp4"))
    out["one_frame.mp4"] = Expect("failed", "shorter than half an output step")
    _run(*_testsrc("96x64", 25, 0.2), *_x264(), path("shorter_than_a_step.mp4"))
    out["shorter_than_a_step.mp4"] = Expect("failed", "shorter than half an output step")
    _run(*_testsrc("96x64", 10, 2), "-vf", "scale=17:9", *_x264("yuv444p"), path("odd_17x9.mp4"))
    out["odd_17x9.mp4"] = Expect("embedded", "17x9", 4)
    _run(*_testsrc("3840x2160", 5, 1), *_x264(), path("uhd_4k.mp4"))
    out["uhd_4k.mp4"] = Expect("embedded", "3840x2160", 2)
    _run(*_testsrc("96x64", 25, 2), "-c:v", "ffv1", "-pix_fmt", "gray", path("gray.mkv"))
    out["gray.mkv"] = Expect("embedded", "96x64", 4)
    _run(*_testsrc("96x64", 25, 2), *_x264("yuv444p"), path("yuv444.mp4"))
    out["yuv444.mp4"] = Expect("embedded", "96x64", 4)
    _run(*_testsrc("96x64", 25, 2), *_x264("yuv420p10le"), path("ten_bit.mp4"))
    out["ten_bit.mp4"] = Expect("embedded", "96x64", 4)
    name = "vidéo d'été 北京 (copy).mp4"
    shutil.copyfile(good, folder / name)
    out[name] = Expect("embedded", "", None)

    # --- the same bytes again: computed once ---
    os.symlink(folder / name, folder / "symlink_to_copy.mp4")
    out["symlink_to_copy.mp4"] = Expect("duplicate", name)
    shutil.copyfile(folder / "no_audio.mp4", folder / "no_audio_again.mp4")
    out["no_audio_again.mp4"] = Expect("duplicate", "no_audio.mp4")
    return out
