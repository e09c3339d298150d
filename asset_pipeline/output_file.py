"""Writing an asset's content to a file a user named (``asset-pipeline get -o FILE``).

A user mistake must never cost data or follow a trap: an existing file is replaced only when
asked (`force`), and then atomically (a temp file renamed over it, so a failed write leaves the
old file); a symbolic link is never written through, with or without `force`; a new file is
created exclusively (``O_EXCL`` fails on any existing name, a dangling link included) and removed
again if writing fails. Every problem is an `OutputError` with one line naming the path.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from asset_pipeline.errors import OutputError


def _problem(exc: OSError, target: Path) -> OutputError:
    return OutputError(f"cannot write {target}: {exc.strerror or exc}")


def check_target(target: Path, force: bool = False, devices: bool = True) -> os.stat_result | None:
    """Refuse a path before any content is fetched; returns its lstat (None: it does not exist).
    `devices` False: an existing device or FIFO is refused too (a copy renamed into place would
    replace the device node, not write into it)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError(f"cannot write {target}: a part of its path is a file, not a folder") from None
    if st is None:
        if not target.parent.is_dir():
            raise OutputError(f"cannot write {target}: folder {target.parent} does not exist")
        return None
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"{target} is a symbolic link: it is never written through (remove it or choose another "
                          "name)")
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{target} is a folder: give a file name to write to")
    if not force:
        raise OutputError(f"{target} exists: not overwritten (use --force to replace it)")
    if not devices and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{target} is not a regular file: an exported copy is written as a file (use --original "
                          "to write the stored bytes into it)")
    return st


def _write_all(fd: int, chunks: Iterable[bytes]) -> int:
    written = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            n = os.write(fd, view)
            view, written = view[n:], written + n
    return written


def write_file(target: Path, chunks: Iterable[bytes], force: bool = False) -> int:
    """Write `chunks` to `target` (see the module docstring); returns the bytes written."""
    target = Path(target)
    st = check_target(target, force)
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device or FIFO the user insists on
        try:
            fd = os.open(target, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise _problem(exc, target) from exc
        try:
            return _write_all(fd, chunks)
        except OSError as exc:
            raise _problem(exc, target) from exc
        finally:
            os.close(fd)
    if st is None:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            raise OutputError(f"{target} exists: not overwritten (use --force to replace it)") from None
        except OSError as exc:
            raise _problem(exc, target) from exc
        created = target
    else:
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        except OSError as exc:
            raise _problem(exc, target) from exc
        created = Path(tmp)
    try:
        try:
            written = _write_all(fd, chunks)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created != target:
            os.replace(created, target)  # replaces the name (even a link planted meanwhile), never writes through
    except OSError as exc:
        created.unlink(missing_ok=True)
        raise _problem(exc, target) from exc
    except BaseException:
        created.unlink(missing_ok=True)
        raise
    return written
