"""A video's key in the store: the hash of its bytes, so that a renamed or copied file is found."""

from __future__ import annotations

import builtins
import hashlib
import os

_HASH_CHUNK = 8 << 20


def content_hash(path: str | os.PathLike[str]) -> str:
    """BLAKE2b-128 of the file's bytes, streamed: equal bytes, equal hash, whatever the name."""
    digest = hashlib.blake2b(digest_size=16)
    with builtins.open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def path_key(path: str | os.PathLike[str]) -> str:
    """Key of a file whose bytes cannot be read (a dangling link): failures are recorded under it."""
    return "path-" + hashlib.blake2b(os.path.abspath(path).encode(), digest_size=12).hexdigest()
