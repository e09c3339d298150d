"""Consuming the inbox: committed inputs leave it, and only then.

An input is removed after its versions are committed and the blobs they rely on are checked
(`verify_blobs` may still need the input to store a blob again), so a crash at any point leaves
it in the inbox — a re-run finds its content already a version and removes it then. The media
file goes first, its sidecar second; a sidecar orphaned by a crash in between is recognised on
the next run (its media path was committed after the sidecar was written) and removed instead of
being rejected. A file is removed only if it still is the one that was ingested: a generator
that wrote a new file under the same name meanwhile keeps it for the next run. Names are looked
up and removed in their folder as reached without following a symbolic link, so a folder swapped
for a link after the listing is never emptied through it, wherever it points.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterator
from typing import TypeVar

from asset_pipeline.examine import Examined
from asset_pipeline.failpoints import failpoint
from asset_pipeline.filestamp import FileStamp
from asset_pipeline.inbox import InboxItem, open_item_folder
from asset_pipeline.ingest import StoredBatch

T = TypeVar("T")


def _unlink_at(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def remove_input(folder: int, ex: Examined) -> bool:
    """Remove an ingested input (media, then sidecar) from `folder` — the input's folder, reached
    without following links — if it is unchanged since it was read. The hard link the store made
    moved the file's ctime, so inode, size and mtime decide."""
    name = ex.item.path.name
    if ex.stat_before is None or not ex.stat_before.same_file_unwritten(FileStamp.read(name, dir_fd=folder)):
        return False  # rewritten since: the next run's input, with its sidecar
    _unlink_at(folder, name)
    failpoint("between-unlinks")
    side = ex.item.sidecar
    if side is not None and ex.sidecar_stamp is not None and \
            ex.sidecar_stamp.same_content(FileStamp.read(side.name, dir_fd=folder)):
        _unlink_at(folder, side.name)
    return True


def remove_leftover(folder: int, item: InboxItem) -> bool:
    """A sidecar whose input a crashed run consumed: removed from `folder` if unchanged since the scan."""
    if item.stamp is not None and item.stamp.same_content(FileStamp.read(item.path.name, dir_fd=folder)):
        _unlink_at(folder, item.path.name)
        return True
    return False


def consume_local(batch: StoredBatch) -> int:
    """Remove a committed batch's inputs from a local inbox; returns how many left it."""
    removed = 0
    for folder, accepted in _by_folder(batch.accepted, lambda ex: ex.item):
        removed += sum(remove_input(folder, ex) for ex in accepted)
    for folder, leftovers in _by_folder(batch.leftovers, lambda item: item):
        for item in leftovers:
            remove_leftover(folder, item)
    return removed


def _by_folder(entries: list[T], item_of: Callable[[T], InboxItem]) -> Iterator[tuple[int, list[T]]]:
    """(descriptor of an inbox folder, its entries) for each folder the entries' items are in,
    each folder opened once through the no-link walk and closed after its entries; a folder
    swapped for a link (or gone) is skipped: its inputs stay for the next run."""
    groups: dict[str, list[T]] = {}
    for entry in entries:
        groups.setdefault(posixpath.dirname(item_of(entry).rel), []).append(entry)
    for group in groups.values():
        folder = open_item_folder(item_of(group[0]))
        if folder is None:
            continue
        try:
            yield folder, group
        finally:
            os.close(folder)


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
