"""A video's steps computed so far: what a task interrupted in the middle of a long video keeps (the
store's progress, ``SegmentWriter.save_progress``) and what the task that takes the video next starts
from. Steps are reduced in order, so what is kept is always the first ``done`` steps; the rest are
computed from the same plan and the same pixels, and the entry is bit for bit an uninterrupted run's."""

from __future__ import annotations

import dataclasses
import typing as tp

import numpy as np

from pipeline.embedding import timegrid


@dataclasses.dataclass
class Partial:
    """``rows`` ``(steps, *features)``, of which the first ``done`` are computed."""

    rows: np.ndarray
    done: int
    frequency: float

    def progress(self) -> tuple[np.ndarray, dict[str, tp.Any]]:
        """The computed steps as the store keeps progress: ``(*features, steps)`` with their times."""
        data = np.ascontiguousarray(np.moveaxis(self.rows[: self.done], 0, -1), dtype=np.float32)
        attrs = {
            "steps_done": self.done,
            "n_steps": int(self.rows.shape[0]),
            "frequency": self.frequency,
            "times": timegrid.output_times(self.done, self.frequency, 0.0).tolist(),
        }
        return data, attrs


class ProgressMismatch(ValueError):
    """Saved progress that does not fit the video's plan (never expected: the config UID and the content
    hash fix both): the video fails naming it rather than mixing the steps of two plans."""


@dataclasses.dataclass(frozen=True)
class Resume:
    """Where a video resumes: the rows ``(start, *features)`` of its first steps, saved by a task that
    planned ``n_steps`` steps."""

    rows: np.ndarray
    n_steps: int

    @property
    def start(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def from_progress(cls, data: np.ndarray, attrs: dict[str, tp.Any]) -> Resume:
        """From what ``Store.progress`` returns (``Partial.progress``'s layout)."""
        return cls(np.moveaxis(np.asarray(data, dtype=np.float32), -1, 0), int(attrs.get("n_steps", -1)))

    def check(self, n_steps: int, path: str) -> None:
        """``ProgressMismatch`` unless this resumes a plan of ``n_steps`` steps, with steps left to compute."""
        if self.n_steps != n_steps or not 0 < self.start < n_steps:
            raise ProgressMismatch(
                f"{path}: its saved progress ({self.start} of {self.n_steps} steps) does not fit its plan of "
                f"{n_steps} steps"
            )
