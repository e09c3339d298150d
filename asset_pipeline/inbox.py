"""Finding generator outputs in an inbox (local folder or S3 prefix) and pairing them with sidecars.

A generator writes the media file first and its ``<file>.meta.json`` sidecar last, so an input
is ready when its sidecar exists. Hidden files and folders (``.partial``, ``.tmp``) are ignored.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from asset_pipeline.location import Location
from asset_pipeline.sidecar import SIDECAR_SUFFIX


@dataclass(frozen=True)
class InboxItem:
    rel: str                    # path inside the inbox, '/'-separated; the input's identity
    path: Path                  # local file with the content (a spooled copy for S3 inboxes)
    sidecar: Path | None        # None when the generator wrote no sidecar
    size: int
    mtime_ns: int
    orphan_sidecar: bool = False  # a sidecar whose media file is missing


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


def list_local(root: Path) -> dict[str, tuple[int, int]]:
    """{rel: (size, mtime_ns)} of every visible file under `root` (plain strings and scandir:
    a listing of 10^4 files costs milliseconds, not the pathlib overhead)."""
    found: dict[str, tuple[int, int]] = {}
    if not root.is_dir():
        return found
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
                        st = entry.stat()
                        found[prefix + entry.name] = (st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    continue
    return found


def scan_local(root: Path, only: list[str] | None = None) -> list[InboxItem]:
    listing = list_local(root)
    if only is not None:
        wanted = set(only) | {r + SIDECAR_SUFFIX for r in only}
        listing = {r: v for r, v in listing.items() if r in wanted}
    items = []
    for rel, side, orphan in pair_files(listing):
        size, mtime = listing[rel]
        items.append(InboxItem(rel, root / rel, root / side if side else None, size, mtime, orphan))
    return items


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


def move_to_quarantine(item: InboxItem, dest_dir: Location) -> Location:
    """Move an input (and its sidecar) under `dest_dir` (local or S3), keeping its relative path.
    On S3 the upload completes before the local file goes."""
    target = dest_dir / item.rel
    moves = [(item.path, target)] + ([(item.sidecar, target.parent / item.sidecar.name)] if item.sidecar else [])
    for source, dest in moves:
        if not source.exists():
            continue
        if dest.is_s3:
            dest.upload(source)
            source.unlink(missing_ok=True)
        else:
            dest.path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(source, dest.path)
    return target
