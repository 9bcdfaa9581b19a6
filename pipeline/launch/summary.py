"""The launch summary: counts first, a screenful of examples, every line in a file when they do not fit."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from pipeline.common.files import write_atomic
from pipeline.common.progress import duration_text
from pipeline.common.text import table
from pipeline.store import layout

EXAMPLES = 5
"""Example lines per kind (duplicates, flagged, failed, not done) in a printed summary."""


@dataclasses.dataclass
class Summary:
    config_uid: str
    store: str
    computed: list[str] = dataclasses.field(default_factory=list)
    cached: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    not_done: dict[str, str] = dataclasses.field(default_factory=dict)
    """Videos left undone because their job ended without finishing them (cancelled, killed): relaunch."""
    duplicates: dict[str, str] = dataclasses.field(default_factory=dict)
    discarded: list[str] = dataclasses.field(default_factory=list)
    """Computed here but stored first by another worker: wasted work, never a second copy."""
    job_ids: list[str] = dataclasses.field(default_factory=list)
    full_list: str = ""
    """Where the summary with every line was written, when the printed one leaves lines out."""
    estimated_s: float | None = None
    """The wall time the launch's estimate gave (``pipeline.launch.estimate``), None where none was known."""
    elapsed_s: float | None = None
    """The wall time from submission to the end of the follow."""
    flagged: dict[str, str] = dataclasses.field(default_factory=dict)
    """Computed videos the user should know about: a variable frame rate timed exactly, not as the
    reference would (its note is also in the entry's ``timing_note`` attribute)."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_done

    def render(self, examples: int | None = EXAMPLES) -> str:
        """Counts first, then at most ``examples`` lines per kind (``None``: every line)."""
        lines = [
            f"config {self.config_uid}  store {self.store}",
            f"  computed {len(self.computed)}  cached {len(self.cached)}  failed {len(self.failed)}"
            + (f"  not done {len(self.not_done)}" if self.not_done else "")
            + (f"  duplicates {len(self.duplicates)}" if self.duplicates else "")
            + (f"  computed twice {len(self.discarded)}" if self.discarded else "")
            + (f"  flagged {len(self.flagged)}" if self.flagged else ""),
        ]
        if self.elapsed_s is not None:
            guess = f" (estimated {duration_text(self.estimated_s)})" if self.estimated_s is not None else ""
            lines.append(f"  took {duration_text(self.elapsed_s)}{guess}")
        kinds = [
            ("same bytes as {why}: {path}", "duplicates", self.duplicates),
            ("FLAGGED {path}: {why}", "flagged", self.flagged),
            ("FAILED {path}: {why}", "failed", self.failed),
            ("NOT DONE {path}: {why}", "not done", self.not_done),
        ]
        for line, kind, items in kinds:
            shown = list(items.items())[:examples] if examples is not None else list(items.items())
            lines += ["  " + line.format(path=p, why=why) for p, why in shown]
            if len(items) > len(shown):
                lines.append(f"  ... {len(items) - len(shown)} more {kind} (all of them: {self.full_list or '?'})")
        if self.not_done:
            lines.append("  relaunch the same command to compute what is not done (stored videos are skipped)")
        return "\n".join(lines)

    @property
    def truncated(self) -> bool:
        return any(len(d) > EXAMPLES for d in (self.duplicates, self.flagged, self.failed, self.not_done))


def render_summary(summary: Summary) -> str:
    """The summary as printed: a screenful; with more lines than that, every line goes to a file beside the
    config's job logs, named in what is printed."""
    if summary.truncated:
        path = layout.jobs(Path(summary.store), summary.config_uid) / f"summary-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        summary.full_list = str(path)
        write_atomic(path, summary.render(examples=None) + "\n")
    return summary.render()


def sweep_table(rows: list[tuple[str, Summary]]) -> str:
    """One line per point of a sweep: its config UID and counts."""
    header = ("point", "config uid", "computed", "cached", "failed", "not done")
    body = [
        (label, s.config_uid, str(len(s.computed)), str(len(s.cached)), str(len(s.failed)), str(len(s.not_done)))
        for label, s in rows
    ]
    return f"sweep: {len(rows)} point(s)\n" + "\n".join(table(header, body))
