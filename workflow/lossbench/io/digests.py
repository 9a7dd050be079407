"""File digests, shared by the stages that record or check what a file holds.

In:  a file's path and the hash algorithms wanted (hashlib names).
Out: {algorithm: hex digest}, the file read once in chunks (`file_digests`), or the SHA-256
     alone (`file_sha256`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# Bytes read at a time: a few megabytes keep the memory flat for any file size.
CHUNK_BYTES = 1 << 22


def file_digests(path: str | Path, *algorithms: str) -> dict[str, str]:
    """The hex digests of the file at `path` in each of `algorithms`, read once."""
    hashes = {name: hashlib.new(name, usedforsecurity=False) for name in algorithms}
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            for digest in hashes.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file at `path` (hex)."""
    return file_digests(path, "sha256")["sha256"]
