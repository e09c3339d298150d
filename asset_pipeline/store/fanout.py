"""A local store's fan-out: how many folder levels sit between ``objects/`` and a blob.

A new store uses one level, ``objects/ab/<sha256>``, as git and DVC lay out theirs: it never
makes more than 256 folders. With two levels (``objects/ab/cd/<sha256>``) a young store made a
folder for almost every blob it stored: 17,234 mkdirs for its first 20,000 blobs, each one an
inode and a directory block on ext4, measured at 0.5-2.6 s on this project's 2-core machine,
against 0.04 s for one level's 256. One level still keeps a folder near 40,000 entries at 10^7
blobs, which ext4's and XFS's hashed directories look up without scanning.

The depth is fixed once per store and written in ``objects/.fanout``, so every process that opens
the store agrees on it. One level is chosen only by the process that makes ``objects/``. A store
found without the file is read by what it holds: a blob file right under a two-hex-digit folder
means one level (a store whose marker was lost, say by ``cp objects/*``); a folder there, or no
blob at all, means two — the layout of versions that wrote no ``.fanout``, which may still be
writing to it. Blobs are never moved.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

from asset_pipeline.errors import ConfigError
from asset_pipeline.store.base import is_sha256

FANOUT_FILE = ".fanout"
NEW_STORE_LEVELS = 1
_LEGACY_LEVELS = 2
_LEVELS = ("1", "2")
_FOLDER = re.compile(r"^[0-9a-f]{2}$")


def fanout_levels(objects: Path, scratch: Path) -> int:
    """The store's fan-out depth, recorded in `objects`/.fanout on first use (`objects` is made
    here when missing). `scratch` is the store's temp folder on the same filesystem: the file
    appears complete or not at all, and is on disk before its name is."""
    marker = objects / FANOUT_FILE
    recorded = _recorded(marker)
    if recorded is not None:
        return recorded
    try:
        objects.mkdir(parents=True)
        levels = NEW_STORE_LEVELS
    except FileExistsError:
        levels = _levels_in_use(objects)
    _record(marker, scratch, levels)
    recorded = _recorded(marker)
    return levels if recorded is None else recorded


def _recorded(marker: Path) -> int | None:
    try:
        text = marker.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    if text not in _LEVELS:
        raise ConfigError(f"{marker}: the store's fan-out must be 1 or 2, found {text[:20]!r}")
    return int(text)


def _levels_in_use(objects: Path) -> int:
    """What a store without `.fanout` holds: 1 if a blob file sits right under a fan-out folder,
    else 2."""
    with os.scandir(objects) as entries:
        folders = [e.path for e in entries if _FOLDER.match(e.name) and e.is_dir(follow_symlinks=False)]
    for folder in folders:
        with os.scandir(folder) as entries:
            for entry in entries:
                if _FOLDER.match(entry.name) and entry.is_dir(follow_symlinks=False):
                    return 2
                if is_sha256(entry.name):
                    return 1
    return _LEGACY_LEVELS


def _record(marker: Path, scratch: Path, levels: int) -> None:
    """Write `levels` as the marker unless one is there already (a hard link never replaces: of
    two processes opening a store at once, the first to link decides, and both read its answer).
    A store this process cannot write (read-only mount, permissions) is left unrecorded: the
    next open reads the same answer from what the store holds."""
    tmp = scratch / f"fanout.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    try:
        scratch.mkdir(exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, f"{levels}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, marker)
        except FileExistsError:
            return
        except OSError:  # a filesystem without hard links: write it unless another process did
            if _recorded(marker) is None:
                os.replace(tmp, marker)
        _sync_folder(marker.parent)
    except OSError:
        pass  # not writable here: unrecorded, see above
    finally:
        with contextlib.suppress(OSError):  # (a read-only mount refuses even a missing name's unlink)
            tmp.unlink()


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
