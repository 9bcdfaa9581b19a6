"""The config UID: exca's ``ConfDict`` UID of a canonical config, readable and shell-safe."""

from __future__ import annotations

import re
import typing as tp

from pipeline.config.versions import UID_VERSION

_NOT_SHOWN = ("format_version", "model", "family")
_PATTERN = re.compile(r"[a-z0-9_]+(-\S*)?-[0-9a-f]{8}")
_SHELL_UNSAFE = {ord(c): None for c in "(){}"}


def looks_like_config_uid(value: str) -> bool:
    """``value`` has a config UID's shape (``videomae-frequency=4-adff876a``), not launch words'."""
    return bool(_PATTERN.fullmatch(value))


def config_uid(canonical: dict[str, tp.Any], defaults: dict[str, tp.Any]) -> str:
    """``<family>-<fields that differ from defaults>-<hash of every field>`` with exca's ``ConfDict`` UID.
    The model's identity is hashed, never shown (hub names hold ``/``); brackets are dropped from the
    readable part so that a UID can be pasted into a shell unquoted."""
    from exca import ConfDict

    shown = {k: v for k, v in canonical.items() if k not in _NOT_SHOWN and defaults.get(k, ...) != v}
    digest = ConfDict(canonical).to_uid(version=UID_VERSION).rsplit("-", 1)[1]
    readable = ConfDict(shown).to_uid(version=UID_VERSION).rsplit("-", 1)[0] if shown else ""
    return "-".join(p for p in (canonical["family"], readable.translate(_SHELL_UNSAFE), digest) if p)
