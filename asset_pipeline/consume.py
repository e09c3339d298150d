"""Consuming the inbox: committed inputs leave it, and only then.

An input is removed after its versions are committed and the blobs they rely on are checked
(`verify_blobs` may still need the input to store a blob again), so a crash at any point leaves
it in the inbox — a re-run finds its content already a version and removes it then. The media
file goes first, its sidecar second; a sidecar orphaned by a crash in between is recognised on
the next run (its media path was committed after the sidecar was written) and removed instead of
being rejected. A file is removed only if it still is the one that was ingested: a generator
that wrote a new file under the same name meanwhile keeps it for the next run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from asset_pipeline.examine import Examined
from asset_pipeline.failpoints import failpoint
from asset_pipeline.filestamp import FileStamp
from asset_pipeline.inbox import InboxItem
from asset_pipeline.ingest import StoredBatch


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_input(ex: Examined) -> bool:
    """Remove an ingested input (media, then sidecar) if it is unchanged since it was read. The
    hard link the store made moved the file's ctime, so inode, size and mtime decide."""
    if ex.stat_before is None or not ex.stat_before.same_file_unwritten(FileStamp.read(ex.item.path)):
        return False  # rewritten since: the next run's input, with its sidecar
    _unlink(ex.item.path)
    failpoint("between-unlinks")
    side = ex.item.sidecar
    if side is not None and ex.sidecar_stamp is not None and ex.sidecar_stamp.same_content(FileStamp.read(side)):
        _unlink(side)
    return True


def remove_leftover(item: InboxItem) -> bool:
    """A sidecar whose input a crashed run consumed: removed if unchanged since the scan."""
    if item.stamp is not None and item.stamp.same_content(FileStamp.read(item.path)):
        _unlink(item.path)
        return True
    return False


def consume_local(batch: StoredBatch) -> int:
    """Remove a committed batch's inputs from a local inbox; returns how many left it."""
    removed = sum(remove_input(ex) for ex in batch.accepted)
    for item in batch.leftovers:
        remove_leftover(item)
    return removed


def consume_with(delete_keys: Callable[[list[str]], None]) -> Callable[[StoredBatch], int]:
    """A consumer for an S3 inbox: exactly the keys the committed inputs (and their sidecars)
    were copied from are deleted, in bulk. (The local spool copies go with the run's spool.)"""
    def consume(batch: StoredBatch) -> int:
        keys = [k for ex in batch.accepted for k in (ex.item.s3_key, ex.item.s3_sidecar_key) if k is not None]
        keys += [item.s3_key for item in batch.leftovers if item.s3_key is not None]
        if keys:
            delete_keys(keys)
        return len(batch.accepted)

    return consume
