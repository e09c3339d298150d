"""Streaming SHA-256 of files: constant memory whatever the size."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

# 1 MiB reads: large enough that hashlib releases the GIL and runs at SHA-extension speed,
# small enough that memory stays flat for a 100 GB model.
CHUNK = 1024 * 1024


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """Hex sha256 and byte count of everything left in `stream`."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    readinto = getattr(stream, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buf)
            if not n:
                break
            digest.update(view[:n])
        else:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            n = len(chunk)
            digest.update(chunk)
        size += n
    return digest.hexdigest(), size


def hash_file(path: str | Path) -> tuple[str, int]:
    with open(path, "rb", buffering=0) as f:
        return hash_stream(f)
