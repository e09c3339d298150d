"""The object-store interface and the one rule for turning a hash into a key."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def is_sha256(value: str) -> bool:
    return bool(_SHA256.match(value))


def key_for(sha256: str, levels: int = 2) -> str:
    """``objects/ab/cd/<sha256>`` (two fan-out levels: S3, where more prefixes mean more request
    throughput, and local stores made before `.fanout` existed) or ``objects/ab/<sha256>`` (one
    level: a local store's layout, see `LocalObjectStore`)."""
    if not is_sha256(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    if levels == 1:
        return f"objects/{sha256[:2]}/{sha256}"
    return f"objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class ObjectStore(ABC):
    """Blobs keyed by their sha256. A key is only ever visible with its complete content."""

    # True where forked worker processes may write blobs through this object (no shared
    # connections or sockets); the ingest then stores each file in the process that hashed it.
    process_safe = False

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def size(self, sha256: str) -> int:
        """Size in bytes; raises FileNotFoundError when the blob is absent."""

    @abstractmethod
    def put_file(self, path: Path, sha256: str) -> bool:
        """Store the file under `sha256` (already computed by the caller).

        Returns False without writing when the key exists (dedup). The caller hashed first, so
        unchanged content costs a hash and an existence check, never a copy.
        """

    def put_bytes(self, data: bytes, sha256: str) -> bool:
        """Store content already in memory under `sha256` (computed from exactly these bytes)."""
        import io

        return self.put_stream(io.BytesIO(data))[2]

    @abstractmethod
    def put_stream(self, stream: BinaryIO) -> tuple[str, int, bool]:
        """Store a stream whose hash is not known yet: (sha256, size, written)."""

    @abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """A streaming reader; raises FileNotFoundError when the blob is absent."""

    @abstractmethod
    def delete(self, sha256: str) -> bool: ...

    @abstractmethod
    def iter_hashes(self) -> Iterator[str]: ...

    # --- garbage collection: hide, re-check, then purge or unhide ------------------------------
    # A collector never deletes a blob outright. It hides it (the key stops resolving), re-reads
    # the references, and only then purges the hidden copy — or unhides it when a writer committed
    # a reference meanwhile. A writer that relied on an existing blob checks it after its commit and
    # unhides (or stores again) what it finds missing. Each side acts first and looks second, so one
    # of them always sees the other: no committed version is ever left without its blob.

    @abstractmethod
    def hide(self, sha256: str) -> bool:
        """Move the blob out of sight (into the store's trash); False when it was not there."""

    @abstractmethod
    def unhide(self, sha256: str) -> bool:
        """Put a hidden blob back under its key; False when there is no hidden copy."""

    @abstractmethod
    def purge_hidden(self, sha256: str) -> bool:
        """Delete the hidden copy for good; False when there was none."""

    @abstractmethod
    def hidden_hashes(self) -> Iterator[str]:
        """Blobs a collector hid and did not settle (it crashed in between)."""

    @abstractmethod
    def modified_at(self, sha256: str) -> float | None:
        """When the blob was last written (POSIX seconds), None when absent."""

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        """Abort uploads a killed writer left incomplete (S3 multipart); returns how many."""
        return 0

    def describe(self) -> str:
        return type(self).__name__

    def flush(self) -> None:
        """Make written blobs durable before metadata points at them (no-op where writes are)."""

    def url(self, sha256: str, expires_s: int = 3600) -> str:
        raise NotImplementedError(f"{type(self).__name__} has no download URLs")

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()
