"""A local object store with a cloud replica: every blob is also kept in S3 (or an
S3-compatible endpoint such as Google Cloud Storage's interoperability API).

Replication runs after each commit, in batches, and is tracked in the `replica_log` Delta table,
so a crashed run leaves only unlogged blobs that the next run checks (one HEAD) and uploads. Reads
fall back to the replica: a missing local blob, or one whose bytes no longer hash to its key, is
fetched from the replica, verified, and written back locally (healed) before it is served.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from asset_pipeline.errors import ObjectCorrupt, ObjectMissing
from asset_pipeline.failpoints import failpoint
from asset_pipeline.hashing import hash_file
from asset_pipeline.lifecycle.placement import placement_sql
from asset_pipeline.sql import connect
from asset_pipeline.store import LocalObjectStore, ObjectStore, S3ObjectStore
from asset_pipeline.tables import Tables

EAGER_VERIFY_MAX = 256 * 1024 * 1024  # blobs up to this size are re-hashed before they are served
BATCH = 1000


@dataclass
class ReplicaReport:
    pending: int        # blobs of committed versions not yet logged as replicated
    uploaded: int = 0
    already_there: int = 0


class ReplicatedStore(ObjectStore):
    """Writes and lookups go to the local store; reads heal from the replica."""

    process_safe = True  # ingest workers write the local store directly (see LocalObjectStore)

    def __init__(self, local: LocalObjectStore, replica: S3ObjectStore, tables: Tables,
                 eager_verify_max: int = EAGER_VERIFY_MAX):
        self.local, self.replica, self.tables = local, replica, tables
        self.eager_verify_max = eager_verify_max  # re-hash before serving up to this size; larger: while streaming

    # --- the local store, as is -----------------------------------------------------------------
    def exists(self, sha256: str) -> bool:
        return self.local.exists(sha256)

    def size(self, sha256: str) -> int:
        return self.local.size(sha256) if self.local.exists(sha256) else self.replica.size(sha256)

    def put_file(self, path: Path, sha256: str) -> bool:
        return self.local.put_file(path, sha256)

    def adopt(self, fd: int, sha256: str, stamp, give_inode: bool) -> tuple[bool, str] | None:
        """Adopted into the local store, like any write (replicated after the commit)."""
        return self.local.adopt(fd, sha256, stamp, give_inode)

    def put_bytes(self, data: bytes, sha256: str) -> bool:
        return self.local.put_bytes(data, sha256)

    def put_stream(self, stream: BinaryIO) -> tuple[str, int, bool]:
        return self.local.put_stream(stream)

    def delete(self, sha256: str) -> bool:
        return self.local.delete(sha256)

    def iter_hashes(self) -> Iterator[str]:
        return self.local.iter_hashes()

    def hide(self, sha256: str) -> bool:
        return self.local.hide(sha256)

    def unhide(self, sha256: str) -> bool:
        return self.local.unhide(sha256)

    def purge_hidden(self, sha256: str) -> bool:
        """A blob the sweep collected goes from the replica too (a backup must not outlive a
        deletion), and leaves the log so that the same bytes ingested again are replicated again."""
        purged = self.local.purge_hidden(sha256)
        if purged:
            self.replica.delete(sha256)
            self.tables.delete_matching("replica_log", [{"sha256": sha256}], keys=("sha256",))
        return purged

    def hidden_hashes(self) -> Iterator[str]:
        return self.local.hidden_hashes()

    def modified_at(self, sha256: str) -> float | None:
        return self.local.modified_at(sha256)

    def flush(self) -> None:
        self.local.flush()

    def path(self, sha256: str) -> Path:
        return self.local.path(sha256)

    def describe(self) -> str:
        return f"{self.local.root} + replica {self.replica.describe()}"

    # --- reads that heal -------------------------------------------------------------------------
    def open(self, sha256: str) -> BinaryIO:
        if not self.local.exists(sha256):
            self.heal(sha256)
        elif self.local.size(sha256) <= self.eager_verify_max:
            if hash_file(self.local.path(sha256))[0] != sha256:
                self.heal(sha256)
        else:
            return _Verifying(self.local.open(sha256), sha256, self)
        return self.local.open(sha256)

    def heal(self, sha256: str) -> None:
        """Replace the local copy with the replica's, verified."""
        try:
            with self.replica.open(sha256) as remote:
                ok = self.local.repair(sha256, remote)
        except FileNotFoundError as exc:
            raise ObjectMissing(f"blob {sha256} is missing or corrupt locally and not in the replica "
                                f"{self.replica.describe()}") from exc
        if not ok:
            raise ObjectMissing(f"blob {sha256}: the replica's copy does not hash to its key either")


class _Verifying(io.RawIOBase):
    """A large blob, hashed while it is read: at the end a mismatch heals the local copy and
    raises (the caller already has bad bytes and must read again)."""

    def __init__(self, inner: BinaryIO, sha256: str, store: ReplicatedStore):
        self.inner, self.sha256, self.store = inner, sha256, store
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.inner.readinto(buffer)
        if n:
            self.digest.update(memoryview(buffer)[:n])
        elif self.digest.hexdigest() != self.sha256:
            self.store.heal(self.sha256)
            raise ObjectCorrupt(f"blob {self.sha256} was corrupt on local disk; it has been healed from the "
                                "replica — read it again")
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()


def pending_blobs(tables: Tables) -> list[str]:
    """Blobs the hot store must hold (the lifecycle's placement: not those of an archived asset,
    a hard-deleted one or a purged version) that the replica log does not hold yet. The replica
    backs up the hot store: when a sweep collects a hot copy it takes it out of the replica and
    its log too, and a version whose bytes went that way has nothing left to upload."""
    tables.ensure("replica_log")
    con = connect(tables, ["assets", "asset_versions", "lifecycle_actions", "replica_log"])
    try:
        # The placement of just the hashes the log lacks (few, once replicated): every version
        # that shares one still counts, so the answer is that of the full placement.
        scope = "where v.sha256 in (select sha256 from unlogged)"
        return [r[0] for r in con.execute(f"""
            with unlogged as (select distinct v.sha256 from asset_versions v
                              anti join replica_log r on r.sha256 = v.sha256)
            select p.sha256 from ({placement_sql(scope)}) p where p.in_hot order by 1""").fetchall()]
    finally:
        con.close()


def replicate(store: ReplicatedStore, limit: int | None = None, threads: int = 8) -> ReplicaReport:
    """Upload what the replica lacks, a batch at a time; each batch is logged in one commit once
    its uploads are complete, so a crash costs at most a batch of HEAD requests on the next run."""
    todo = pending_blobs(store.tables)[:limit]
    report = ReplicaReport(pending=len(todo))

    def upload(sha: str) -> bool:
        if not store.local.exists(sha):
            store.heal(sha)  # nothing to upload from: the replica has it (or it is truly missing)
            return False
        return store.replica.put_file(store.local.path(sha), sha)

    with ThreadPoolExecutor(threads) as pool:
        for lo in range(0, len(todo), BATCH):
            batch = todo[lo:lo + BATCH]
            written = list(pool.map(upload, batch))
            failpoint("replica-batch")
            now = datetime.now(UTC)
            store.tables.merge("replica_log", [{"sha256": sha, "replicated_at": now} for sha in batch],
                               keys=("sha256",), update=False)
            report.uploaded += sum(written)
            report.already_there += len(batch) - sum(written)
    return report


def replica_gaps(store: ReplicatedStore, sample: int = 50) -> list[str]:
    """Logged blobs the replica does not actually hold (a sample, one HEAD each)."""
    import random

    logged = store.tables.read("replica_log", columns=["sha256"])["sha256"].to_pylist()
    return sorted(sha for sha in random.sample(logged, min(sample, len(logged))) if not store.replica.exists(sha))
