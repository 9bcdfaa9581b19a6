"""The errors of ``pipeline.align``: each names everything that is wrong at once, not the first thing."""

from __future__ import annotations

from pathlib import Path


class MissingVideosError(LookupError):
    """Stimulus videos that have no entry in the store under the config: every one is listed, with the
    launcher command that computes them (a relaunch computes only what is missing)."""

    def __init__(self, videos: list[Path], store: str, config_uid: str | None, command: str) -> None:
        self.videos = videos
        self.store = store
        self.config_uid = config_uid
        self.command = command
        under = f"config {config_uid}" if config_uid else "this config (the store holds no entry of it yet)"
        lines = [f"{len(videos)} stimulus video(s) not in the store {store} under {under}:"]
        lines += [f"  {v}" for v in videos]
        lines += ["compute them with:", f"  {command}"]
        super().__init__("\n".join(lines))

    def __str__(self) -> str:  # LookupError would quote a single argument like a key
        return str(self.args[0])


class StimulusFilesNotFoundError(FileNotFoundError):
    """Events name stimulus files that do not exist (after resolving them against the stimuli folder)."""

    def __init__(self, missing: dict[str, Path]) -> None:
        self.missing = missing
        lines = [f"{len(missing)} stimulus file(s) named by the events do not exist:"]
        lines += [f"  {name!r} -> {path}" for name, path in missing.items()]
        super().__init__("\n".join(lines))

    def __str__(self) -> str:
        return str(self.args[0])


class OverlappingEventsError(ValueError):
    """Stimulus events whose presentations overlap by more than the tolerance (``overlap="refuse"``)."""

    def __init__(self, pairs: list[tuple[str, str, float]], tolerance: float) -> None:
        self.pairs = pairs
        lines = [f"{len(pairs)} pair(s) of stimulus events overlap by more than {tolerance:g} s:"]
        lines += [f"  {a} and {b}: {seconds:.3f} s" for a, b, seconds in pairs]
        lines.append(
            "two videos on screen at once is rarely meant (often an event's duration is the file's length while "
            "the next video started earlier); fix the events, or pass overlap='sum' to add their features"
        )
        super().__init__("\n".join(lines))
