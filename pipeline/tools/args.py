"""Argument handling shared by the store tools (status, inspect, report, gc): ``key=value`` and ``--flag``."""

from __future__ import annotations

import re
import sys

from pipeline.common.text import did_you_mean
from pipeline.store import OldLayoutError, Store


class UsageError(SystemExit):
    """A bad command line: the message says what was wrong; the exit code is 2."""

    def __init__(self, message: str) -> None:
        print(message, file=sys.stderr)
        super().__init__(2)


def parse_args(
    argv: list[str] | None, allowed: set[str], flags: set[str], usage: str
) -> tuple[dict[str, str], set[str], list[str]]:
    """``key=value`` pairs, ``--flag``s and positional words, with a clear error for anything else."""
    values: dict[str, str] = {}
    seen: set[str] = set()
    words: list[str] = []
    for arg in sys.argv[1:] if argv is None else argv:
        if arg in ("-h", "--help"):
            print(usage)
            raise SystemExit(0)
        if arg.startswith("--"):
            if arg not in flags:
                raise UsageError(f"unknown option {arg} (known: {', '.join(sorted(flags)) or 'none'})\n{usage}")
            seen.add(arg)
        elif re.match(r"[a-z_]+=", arg):  # a field; config UIDs (``videomae-frequency=3-...``) are words
            key, _, value = arg.partition("=")
            if key not in allowed:
                hint = did_you_mean(key, sorted(allowed))
                raise UsageError(f"unknown field {key!r} ({hint}known: {', '.join(sorted(allowed))})\n{usage}")
            values[key] = value
        else:
            words.append(arg)
    return values, seen, words


def open_store(values: dict[str, str], *, any_layout: bool = False) -> Store:
    """The store named by ``store=``; one of an older layout is refused with the command that converts it
    (unless ``any_layout``: the converter itself)."""
    store = Store(values.get("store", "embeddings.zarr"))
    if not (store.path / "zarr.json").exists():
        raise UsageError(f"no pipeline store at {store.path} (give store=PATH)")
    if not any_layout:
        try:
            store.check_layout()
        except OldLayoutError as e:
            raise UsageError(str(e)) from None
    return store


def chosen_configs(store: Store, values: dict[str, str]) -> list[str]:
    """The config UID given as ``config=``, checked to be in the store, or every config UID of the store."""
    uids = store.config_uids()
    if "config" not in values:
        return uids
    if values["config"] not in uids:
        raise UsageError(f"config {values['config']!r} is not in {store.path}")
    return [values["config"]]
