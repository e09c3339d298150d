"""What identifies a file's content without reading it: (device, inode, size, mtime_ns, ctime_ns).

The kernel sets ctime on every change to a file (content, link count, mode) and no user tool can
set it back, so a file whose stamp is unchanged has not been written since — `touch -r`,
`rsync -t` or `os.utime` restore mtime but move ctime forward. Used to skip re-hashing unchanged
inputs (the hash cache), to check that an input did not change between hashing and linking it
into the store, and to remove an inbox file only when it still is the one that was ingested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class FileStamp:
    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @classmethod
    def read(cls, path: str | os.PathLike[str], follow_symlinks: bool = False,
             dir_fd: int | None = None) -> FileStamp | None:
        """The stamp of `path` (relative to the folder open as `dir_fd`, if given; links not
        followed unless asked), None when it does not exist."""
        try:
            return cls.of(os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks))
        except FileNotFoundError:
            return None

    @cached_property
    def key(self) -> str:
        """The stamp as one string (how the hash cache records a sidecar's; a re-scan compares
        each sidecar's more than once)."""
        return f"{self.dev}:{self.ino}:{self.size}:{self.mtime_ns}:{self.ctime_ns}"

    def same_content(self, other: FileStamp | None) -> bool:
        """Same file, not written since: every field equal."""
        return other == self

    def same_file_unwritten(self, other: FileStamp | None) -> bool:
        """Same inode, same size and mtime; ctime may differ (a hard link or chmod moves it)."""
        return other is not None and (other.dev, other.ino, other.size, other.mtime_ns) == \
            (self.dev, self.ino, self.size, self.mtime_ns)
