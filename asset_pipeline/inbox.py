"""Finding generator outputs in an inbox (local folder or S3 prefix) and pairing them with sidecars.

A generator writes the media file first and its ``<file>.meta.json`` sidecar last, so an input
is ready when its sidecar exists. Hidden files and folders (``.partial``, ``.tmp``) are ignored.
A local inbox is walked as a stream (`iter_local`): an inbox of a million files is never held
in memory, and inputs named by a sensor are looked up directly instead of listing the inbox.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from asset_pipeline.filestamp import FileStamp
from asset_pipeline.sidecar import SIDECAR_SUFFIX


@dataclass(frozen=True)
class InboxItem:
    rel: str                    # path inside the inbox, '/'-separated; the input's identity
    path: Path                  # local file with the content (a spooled copy for S3 inboxes)
    sidecar: Path | None        # None when the generator wrote no sidecar
    size: int
    mtime_ns: int
    orphan_sidecar: bool = False  # a sidecar whose media file is missing
    stamp: FileStamp | None = None  # as scanned (local inboxes): the hash cache's key
    sidecar_stamp: FileStamp | None = None  # the sidecar's, as scanned


def _hidden(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def pair_files(files: dict[str, tuple[int, int]]) -> list[tuple[str, str | None, bool]]:
    """(media rel, sidecar rel or None, orphan-sidecar flag) from a {rel: (size, mtime)} listing."""
    out: list[tuple[str, str | None, bool]] = []
    for rel in sorted(files):
        if rel.endswith(SIDECAR_SUFFIX):
            media = rel[: -len(SIDECAR_SUFFIX)]
            if media not in files:
                out.append((rel, None, True))
            continue
        side = rel + SIDECAR_SUFFIX
        out.append((rel, side if side in files else None, False))
    return out


def _file_stamp(path: str) -> FileStamp | None:
    """The stamp of a regular file (symlinks followed, as the listing does); None otherwise."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return FileStamp.of(st) if stat.S_ISREG(st.st_mode) else None


def _item(root: Path, rel: str, stamp: FileStamp) -> InboxItem | None:
    """The input at `rel` (media or sidecar) paired with its partner, looked up by name."""
    base = str(root)
    if rel.endswith(SIDECAR_SUFFIX):
        if _file_stamp(os.path.join(base, rel[: -len(SIDECAR_SUFFIX)])) is not None:
            return None  # the media file's own entry carries the pair
        return InboxItem(rel, root / rel, None, stamp.size, stamp.mtime_ns, True, stamp)
    side = _file_stamp(os.path.join(base, rel + SIDECAR_SUFFIX))
    return InboxItem(rel, root / rel, root / (rel + SIDECAR_SUFFIX) if side else None, stamp.size, stamp.mtime_ns,
                     False, stamp, side)


def iter_local(root: Path, only: list[str] | None = None) -> Iterator[InboxItem]:
    """Inputs under `root` one by one, folder by folder (no listing of the whole inbox is kept).
    With `only` (inbox paths), just those are looked up. Each media file is paired with its
    sidecar by name; a sidecar whose media file is missing is an orphan."""
    if only is not None:
        for rel in sorted(set(only)):
            if safe_rel(rel) is None or _hidden(PurePosixPath(rel)):
                continue
            stamp = _file_stamp(str(root / rel))
            item = _item(root, rel, stamp) if stamp is not None else None
            if item is not None:
                yield item
        return
    if not root.is_dir():
        return
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            listing = os.scandir(folder)
        except FileNotFoundError:  # removed while scanning
            continue
        with listing as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):  # as os.walk: no loops through links
                        stack.append((entry.path, f"{prefix}{entry.name}/"))
                    elif entry.is_file(follow_symlinks=True):
                        item = _item(root, prefix + entry.name, FileStamp.of(entry.stat()))
                        if item is not None:
                            yield item
                except FileNotFoundError:
                    continue


def scan_local(root: Path, only: list[str] | None = None) -> list[InboxItem]:
    """Every input under `root` (or just `only`), sorted by inbox path."""
    return sorted(iter_local(root, only), key=lambda i: i.rel)


def safe_rel(key: str) -> str | None:
    """An S3 key as a relative path, or None if it could escape a folder (``..``, absolute)."""
    rel = PurePosixPath(key)
    if rel.is_absolute() or any(p in ("..", "") for p in rel.parts) or "\\" in key or "\x00" in key:
        return None
    return rel.as_posix()


def list_s3(client: Any, bucket: str, prefix: str) -> dict[str, tuple[int, int]]:
    base = f"{prefix}/" if prefix else ""
    found: dict[str, tuple[int, int]] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for obj in page.get("Contents", []):
            rel = safe_rel(obj["Key"][len(base):])
            if rel is None or _hidden(PurePosixPath(rel)):
                continue
            found[rel] = (int(obj["Size"]), int(obj["LastModified"].timestamp() * 1e9))
    return found


def scan_s3(client: Any, bucket: str, prefix: str, spool: Path, only: list[str] | None = None) -> list[InboxItem]:
    """Download new inputs into a local spool so that every later step reads local files."""
    listing = list_s3(client, bucket, prefix)
    if only is not None:
        wanted = set(only) | {r + SIDECAR_SUFFIX for r in only}
        listing = {r: v for r, v in listing.items() if r in wanted}
    base = f"{prefix}/" if prefix else ""
    items = []
    for rel, side, orphan in pair_files(listing):
        for r in (rel, side):
            if r is None:
                continue
            dest = spool / r
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, base + r, str(dest))
        size, mtime = listing[rel]
        items.append(InboxItem(rel, spool / rel, spool / side if side else None, size, mtime, orphan))
    return items


def move_to_quarantine(item: InboxItem, dest_dir: Path) -> Path:
    """Move an input (and its sidecar) under `dest_dir`, keeping its relative path."""
    target = dest_dir / item.rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if item.path.exists():
        shutil.move(item.path, target)
    if item.sidecar is not None and item.sidecar.exists():
        shutil.move(item.sidecar, target.with_name(item.sidecar.name))
    return target
