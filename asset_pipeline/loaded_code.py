"""Which code of this package a process runs, for the labels that must name it.

The hash cache remembers a kept inbox's rejects under a digest of the package's source
(`formats.ValidationLimits.checks`), so that a deployed fix has them examined again. The digest
is read from the files on disk when a kept ingest first needs it, but a long-lived process (a
notebook, an interpreter embedding the catalog) may have imported the package long before. A fix
deployed in between would label the old code's rejects with the new code's digest, and every
process running the fix would trust them unread. So the package's files are stamped as the
package is imported (`IMPORTED`, about 1 ms), and a digest is given only while they are still as
stamped. The stamp holds ctime, which on POSIX systems every write moves and nothing sets back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

PACKAGE = Path(__file__).parent

Stamp = tuple[tuple[str, int, int, int, int], ...]


def source_files() -> list[str]:
    """The relative POSIX paths of the package's `.py` files, sorted. Hidden files and
    folders are left out: an editor's lock file (`.#images.py`, a dangling link) is not code."""
    found: list[str] = []
    for folder, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        prefix = os.path.relpath(folder, PACKAGE).replace(os.sep, "/") + "/"
        found += [name if prefix == "./" else prefix + name
                  for name in files if name.endswith(".py") and not name.startswith(".")]
    return sorted(found)


def stamp() -> Stamp:
    """(path, size, mtime_ns, ctime_ns, inode) of each source file that is a regular file (a
    FIFO or a dangling link named like one is not code, and reading a FIFO would block)."""
    out = []
    for rel in source_files():
        try:
            st = os.stat(PACKAGE / rel)
        except OSError:  # gone (or a dangling link) between the walk and the stat
            continue
        if stat.S_ISREG(st.st_mode):
            out.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)


IMPORTED: Stamp = stamp()  # the package's source as this process first imported it


def source_digest() -> str | None:
    """A digest of the package's source (a fix deployed without a version bump counts too);
    None when its files changed since this process imported the package: the code it runs is
    then not what the files say. A file that cannot be read for another reason raises."""
    if stamp() != IMPORTED:
        return None
    digest = hashlib.sha256()
    for rel, *_ in IMPORTED:
        try:
            with open(PACKAGE / rel, "rb") as f:
                digest.update(rel.encode() + b"\x00" + f.read())
        except FileNotFoundError:  # removed while it was read
            return None
    return digest.hexdigest()[:16] if stamp() == IMPORTED else None
