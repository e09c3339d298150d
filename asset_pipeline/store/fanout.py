"""A local store's fan-out: how many folder levels sit between ``objects/`` and a blob.

A new store uses one level, ``objects/ab/<sha256>``, as git and DVC lay out theirs: it never
makes more than 256 folders. With two levels (``objects/ab/cd/<sha256>``) a young store made a
folder for almost every blob it stored: 17,234 mkdirs for its first 20,000 blobs, each one an
inode and a directory block on ext4, measured at 0.5-2.6 s on this project's 2-core machine,
against 0.04 s for one level's 256. One level still keeps a folder near 40,000 entries at 10^7
blobs, which ext4's and XFS's hashed directories look up without scanning.

The depth is fixed once per store and written in ``objects/.fanout``, so every process that opens
the store agrees on it. A store with blob folders but no ``.fanout`` was made with two levels,
before the file existed, and keeps them: its blobs are never moved.
"""

from __future__ import annotations

import errno
import os
import re
import uuid
from pathlib import Path

FANOUT_FILE = ".fanout"
NEW_STORE_LEVELS = 1
_LEVELS = ("1", "2")
_FOLDER = re.compile(r"^[0-9a-f]{2}$")


def fanout_levels(objects: Path, scratch: Path) -> int:
    """The store's fan-out depth, recorded in `objects`/.fanout on first use. `scratch` is the
    store's temp folder on the same filesystem: the file appears complete or not at all."""
    marker = objects / FANOUT_FILE
    recorded = _recorded(marker)
    if recorded is not None:
        return recorded
    levels = 2 if _has_blob_folders(objects) else NEW_STORE_LEVELS
    tmp = scratch / f"fanout.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    try:
        tmp.write_text(f"{levels}\n")
    except PermissionError:
        return levels  # a store this process may only read: nothing to record, nothing to write
    try:
        os.link(tmp, marker)  # never replaces: of two processes opening a new store, one decides
    except FileExistsError:
        pass
    except OSError as exc:  # a filesystem without hard links: both writers found the same answer
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        os.replace(tmp, marker)
    finally:
        tmp.unlink(missing_ok=True)
    recorded = _recorded(marker)
    return levels if recorded is None else recorded


def _recorded(marker: Path) -> int | None:
    try:
        text = marker.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    if text not in _LEVELS:
        raise ValueError(f"{marker}: the store's fan-out must be 1 or 2, found {text[:20]!r}")
    return int(text)


def _has_blob_folders(objects: Path) -> bool:
    with os.scandir(objects) as entries:
        return any(_FOLDER.match(e.name) and e.is_dir(follow_symlinks=False) for e in entries)
