"""How the commands print: aligned tables, short values and human sizes (one renderer for every tool)."""

from __future__ import annotations

import os
import typing as tp
from pathlib import Path


def table(header: tp.Sequence[str], rows: tp.Iterable[tp.Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, with a rule of dashes under the header."""
    body = [list(r) for r in rows]
    widths = [max(len(r[i]) for r in [list(header), *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [list(header), *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def did_you_mean(word: str, known: tp.Sequence[str]) -> str:
    """``"did you mean 'x'? "`` for the closest of ``known`` to a misspelt ``word``, else ``""``."""
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def short(value: tp.Any) -> str:
    """A config value in a few characters: floats to 3 significant digits, lists joined by commas."""
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ",".join(short(v) for v in value)
    return str(value)


def human_size(n: int) -> str:
    """Bytes as ``812 B``, ``3.4 MB``, ``1.2 GB``."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed; files that vanish meanwhile not counted)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
