"""Which code of this package a process runs, for the labels that must name it.

The hash cache remembers a kept inbox's rejects under a digest of the package's source
(`formats.ValidationLimits.checks`), so that a deployed fix has them examined again. The digest
is read from the files on disk when a kept ingest first needs it, but a long-lived process (a
notebook, an interpreter embedding the catalog) may have imported the package long before. A fix
deployed in between would label the old code's rejects with the new code's digest, and every
process running the fix would trust them unread. So the package's files are stamped as the
package is imported (`IMPORTED`, well under a millisecond), and a digest is given only while
they are still as stamped. ctime is in the stamp: every write moves it and nothing sets it back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).parent

Stamp = tuple[tuple[str, int, int, int, int], ...]


def source_files(root: Path = PACKAGE) -> list[tuple[str, str]]:
    """(relative POSIX path, absolute path) of every `.py` file under `root`, sorted. Hidden
    files and folders are left out: an editor's lock file (`.#images.py`, a dangling link) is
    not code."""
    found: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            if name.endswith(".py") and not name.startswith("."):
                rel = name if rel_folder == "." else f"{rel_folder}/{name}"
                found.append((rel.replace(os.sep, "/"), os.path.join(folder, name)))
    return sorted(found)


def stamp(root: Path = PACKAGE) -> Stamp:
    """(path, size, mtime_ns, ctime_ns, inode) of each source file: equal stamps, same code."""
    out = []
    for rel, path in source_files(root):
        try:
            st = os.stat(path)
        except OSError:  # gone (or a dangling link) between the walk and the stat: no code
            continue
        out.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return tuple(out)


IMPORTED: Stamp = stamp()  # the package's source as this process first imported it


def source_digest(root: Path = PACKAGE, imported: Stamp = IMPORTED) -> str | None:
    """A digest of the package's source (a fix deployed without a version bump counts too);
    None when the files changed since `imported` was taken: the code this process runs is then
    not what the files say."""
    now = stamp(root)
    if now != imported:
        return None
    digest = hashlib.sha256()
    try:
        for rel, *_ in now:
            with open(root / rel, "rb") as f:
                digest.update(rel.encode() + b"\x00" + f.read())
    except OSError:  # removed while it was read
        return None
    return digest.hexdigest()[:16] if stamp(root) == imported else None
