"""How fast a config's videos land in the store, and when what is left will have landed: the rate in
video-seconds per second (over the last minutes, and since the launch began) and the ETA at that rate.
Video-seconds, not videos: the queue runs longest first, so a count of videos is a poor clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

from pipeline.common.progress import duration_text

WINDOW_S = 600.0
"""The recent rate is taken over this much time (or since the launch began, if later)."""


@dataclasses.dataclass(frozen=True)
class Pace:
    recent: float | None
    """Video-seconds stored per second over the last ``WINDOW_S`` (None: nothing landed in it)."""
    overall: float | None
    """Video-seconds stored per second since the launch began (None: no launch, or nothing landed)."""
    left_s: float
    """Video-seconds not stored yet (pending and running)."""

    @property
    def eta_s(self) -> float | None:
        """Seconds until what is left has landed, at the recent rate (else the overall one); 0 when nothing
        is left, None when nothing has landed to measure a rate by."""
        if not self.left_s:
            return 0.0
        rate = self.recent or self.overall
        return self.left_s / rate if rate else None


def epoch(iso: str) -> float | None:
    """An entry's ``created`` (ISO 8601) as seconds since the epoch; None when it says no time."""
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


def pace(landed: list[tuple[float, float]], since: float | None, now: float, left_s: float) -> Pace:
    """``landed``: ``(when stored, video-seconds)`` of each entry; ``since``: when the launch began."""
    start = max(now - WINDOW_S, since or now - WINDOW_S)
    recent_s = sum(d for t, d in landed if start <= t <= now)
    recent = recent_s / (now - start) if recent_s and now > start else None
    overall = None
    if since is not None and now > since:
        total = sum(d for t, d in landed if since <= t <= now)
        overall = total / (now - since) if total else None
    return Pace(recent, overall, left_s)


def render(p: Pace) -> str:
    """One line: the rates and the ETA."""
    parts = []
    if p.recent is not None:
        parts.append(f"{p.recent:.3g} video-s/s over the last {WINDOW_S / 60:.0f} min")
    if p.overall is not None:
        parts.append(f"{p.overall:.3g} since the launch began")
    rate = ", ".join(parts) or "nothing stored lately"
    eta = p.eta_s
    when = "nothing left" if eta == 0 else ("no ETA yet" if eta is None else f"ETA {duration_text(eta)}")
    return f"{rate}; {duration_text(p.left_s)} of video left, {when}"
