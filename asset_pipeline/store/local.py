"""Local-disk backend: temp file + link into place, so a crash never leaves a partial blob under a
key, and of two writers racing on the same content exactly one reports the write.

An input already on the store's filesystem is published without copying a byte (`adopt`): a
reflink clone where the filesystem has them (XFS, Btrfs: the blob is its own file, copy-on-write),
else — when the caller gives the inode away (the inbox is consumed) — a hard link of the input
itself, straight under its key. Either way the input's stamp is checked before the key names the
bytes (after the clone; before the link), so bytes that changed after they were hashed never
appear under the old hash.

Blobs sit one folder level below ``objects/`` in a store made now, two in one made by an earlier
version (`asset_pipeline.store.fanout` says how a store's depth is decided).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypeVar

from asset_pipeline.failpoints import failpoint
from asset_pipeline.filestamp import FileStamp
from asset_pipeline.hashing import CHUNK
from asset_pipeline.store.base import ObjectStore, is_sha256, key_for
from asset_pipeline.store.fanout import fanout_levels

_COPY_CHUNK = 64 * 1024 * 1024
_STALE_TMP_S = 24 * 3600
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
# errnos that mean "this filesystem pair cannot share blocks or inodes": fall back to a copy
_NO_SHARING = (errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.ENOSYS, errno.EPERM,
               errno.EMLINK, errno.EACCES)
T = TypeVar("T")


class InputChanged(Exception):
    """The input was written after it was hashed: nothing was published under its old hash."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
        failpoint("blob-write")


def _copy(src: Path, dst_fd: int) -> None:
    """Kernel-side copy (copy_file_range, reflink where the filesystem can), in chunks."""
    with open(src, "rb") as fin:
        in_fd = fin.fileno()
        try:
            while True:
                n = os.copy_file_range(in_fd, dst_fd, _COPY_CHUNK)
                if n == 0:
                    return
                failpoint("blob-write")
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        fin.seek(0)
        os.lseek(dst_fd, 0, os.SEEK_SET)
        os.ftruncate(dst_fd, 0)
        with os.fdopen(os.dup(dst_fd), "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)


def _link_under_key(src: str | Path, final: Path, src_dir_fd: int | None = None) -> None:
    """Hard-link `src` (relative to `src_dir_fd` when given) as the blob `final`, making its
    fan-out folder only when the link finds it missing: a store's blobs pay one system call,
    not a mkdir and a stat too. Raises FileExistsError when the key exists, FileNotFoundError
    when `src` does not."""
    try:
        os.link(src, final, src_dir_fd=src_dir_fd)
    except FileNotFoundError:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, final, src_dir_fd=src_dir_fd)


def _writer_alive(temp_name: str) -> bool:
    """Whether the process that named a temp file ``<prefix>.<pid>.<random>`` still runs."""
    parts = temp_name.split(".")
    if len(parts) < 3 or not parts[-2].isdigit():
        return True  # not ours to judge: left to the age limit
    try:
        os.kill(int(parts[-2]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalObjectStore(ObjectStore):
    process_safe = True  # plain files: forked ingest workers may write blobs themselves

    def __init__(self, root: Path, durable: bool = True):
        self.root = Path(root)
        self.tmp_dir = self.root / "objects" / ".tmp"
        self.trash_dir = self.root / "objects" / ".trash"
        self.levels = fanout_levels(self.root / "objects", self.tmp_dir)  # makes objects/ for a new store
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.durable = durable
        self._clean_stale_tmp()
        # Per-object memory of what this filesystem refused (a failed FICLONE costs four syscalls).
        self._device = os.stat(self.tmp_dir).st_dev
        self._can_clone = True

    def path(self, sha256: str) -> Path:
        return self.root / key_for(sha256, self.levels)

    def exists(self, sha256: str) -> bool:
        # A plain string stat: an unchanged re-scan asks this once per input.
        return os.path.isfile(os.path.join(self.root, key_for(sha256, self.levels)))

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    def _write_temp(self, prefix: str, fill: Callable[[int], T]) -> tuple[str, T]:
        """A read-only temp file (blobs are immutable: a stray write fails loudly) written by
        `fill`; gone again if writing fails."""
        tmp = str(self.tmp_dir / f"{prefix}.{os.getpid()}.{uuid.uuid4().hex[:12]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            try:
                return tmp, fill(fd)
            finally:
                os.close(fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _publish(self, tmp: str, sha256: str) -> bool:
        """Make the complete temp file visible under its key; False if another writer got there
        first (a hard link never replaces, so the dedup count stays exact under races)."""
        final = self.path(sha256)
        try:
            _link_under_key(tmp, final)
            return True
        except FileExistsError:
            return False
        except OSError as exc:  # a filesystem without hard links: same content, so replace is safe
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            os.replace(tmp, final)
            return True
        finally:
            Path(tmp).unlink(missing_ok=True)

    def put_file(self, path: Path, sha256: str) -> bool:
        if self.exists(sha256):
            return False
        tmp, _ = self._write_temp(sha256, lambda fd: _copy(path, fd))
        return self._publish(tmp, sha256)

    def adopt(self, fd: int, sha256: str, stamp: FileStamp, give_inode: bool) -> tuple[bool, str] | None:
        """Publish the input open as `fd` (hashed to `sha256` while it had `stamp`) without
        copying: a reflink clone, or with `give_inode` a hard link of that very inode (made
        through the descriptor, so no path — nor a link swapped into it — is followed; the caller
        removes the input after its commit, and the inode belongs to the store). Returns (whether
        this call published the blob, "cloned" | "linked" | "present"), or None when the input is
        on another filesystem or cannot be shared — the caller copies instead. Raises
        InputChanged when the input's content changed since it was hashed; nothing is then
        published."""
        if stamp.dev != self._device or not (self._can_clone or give_inode):
            return None
        if self._can_clone:
            if self.exists(sha256):
                return False, "present"
            tmp = self._clone(fd, stamp)
            if tmp is not None:
                failpoint("after-link")
                return self._publish(tmp, sha256), "cloned"
        if not give_inode:
            return None
        linked = self._link_inode(fd, sha256, stamp)
        return None if linked is None else (linked, "linked" if linked else "present")

    def _clone(self, fd: int, stamp: FileStamp) -> str | None:
        """A temp file sharing the input's blocks (its own inode: the input may change later
        without touching it); None where the filesystem cannot clone (remembered)."""
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        tmp = str(self.tmp_dir / f"adopt.{os.getpid()}.{uuid.uuid4().hex[:12]}")
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            fcntl.ioctl(out, _FICLONE, fd)
            return self._checked(tmp, stamp, FileStamp.of(os.fstat(fd)))
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            if exc.errno not in _NO_SHARING:
                raise
            self._can_clone = False
            return None
        finally:
            os.close(out)

    def _link_inode(self, fd: int, sha256: str, stamp: FileStamp) -> bool | None:
        """Hard-link the input's own inode straight under its key: whether this call published
        it (False: the key was there), None where it cannot be linked.

        Checked unwritten since it was hashed (its whole stamp, ctime included) and made
        read-only before the key can name it. No temp name is needed: a write after the check is
        as possible after a temp link and its check, and the key must not name a changed inode
        either way; without one, a new blob costs five system calls, not eleven."""
        try:  # linkat(/proc/self/fd, "<fd>", AT_SYMLINK_FOLLOW): exactly the open inode, no path
            proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None  # no /proc (not Linux): copy
        try:  # opened first: a write unseen by the check can only land between it and the link
            now = os.fstat(fd)
            if not stat.S_ISREG(now.st_mode):
                return None
            if not stamp.same_content(FileStamp.of(now)):
                raise InputChanged(f"{sha256}: input changed after it was hashed")
            try:
                os.fchmod(fd, 0o444)  # blobs are read-only; the inbox name goes after the commit
            except PermissionError:
                pass  # not our file (we may link it, not chmod it): it stays as the generator made it
            # (a dir fd makes os.link call linkat; without one it calls link(), which follows nothing)
            _link_under_key(str(fd), self.path(sha256), src_dir_fd=proc)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # the hashed inode has no name left: the input was removed
                raise InputChanged(f"{sha256}: input removed after it was hashed") from exc
            if exc.errno in _NO_SHARING:
                return None
            raise
        finally:
            os.close(proc)
        failpoint("after-link")
        return True

    @staticmethod
    def _checked(tmp: str, before: FileStamp, now: FileStamp | None) -> str:
        """`tmp` (a clone) if the input's bytes are still the hashed ones, else InputChanged (tmp
        removed). A clone leaves the input's stamp alone, so every field must be equal."""
        if not before.same_content(now):
            Path(tmp).unlink(missing_ok=True)
            raise InputChanged(f"{tmp}: input changed after it was hashed")
        return tmp

    def put_bytes(self, data: bytes, sha256: str) -> bool:
        if self.exists(sha256):
            return False
        tmp, _ = self._write_temp(sha256, lambda fd: _write_all(fd, data))
        return self._publish(tmp, sha256)

    def put_stream(self, stream: BinaryIO) -> tuple[str, int, bool]:
        def fill(fd: int) -> tuple[str, int]:
            digest, size = hashlib.sha256(), 0
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                _write_all(fd, chunk)
                size += len(chunk)
            return digest.hexdigest(), size

        tmp, (sha, size) = self._write_temp("stream", fill)
        if self.exists(sha):
            os.unlink(tmp)
            return sha, size, False
        return sha, size, self._publish(tmp, sha)

    def repair(self, sha256: str, stream: BinaryIO) -> bool:
        """Replace the blob under `sha256` with `stream`'s bytes if they hash to it (a good copy
        from elsewhere healing a missing or corrupt one); False, and nothing changed, if not."""
        def fill(fd: int) -> str:
            digest = hashlib.sha256()
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                _write_all(fd, chunk)
            return digest.hexdigest()

        tmp, sha = self._write_temp("repair", fill)
        if sha != sha256:
            os.unlink(tmp)
            return False
        self.path(sha256).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, self.path(sha256))  # the one place a blob is replaced: by its verified bytes
        return True

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def hide(self, sha256: str) -> bool:
        self.trash_dir.mkdir(exist_ok=True)
        try:
            os.rename(self.path(sha256), self.trash_dir / sha256)  # atomic: the key resolves or it does not
            return True
        except FileNotFoundError:
            return False

    def unhide(self, sha256: str) -> bool:
        hidden = self.trash_dir / sha256
        final = self.path(sha256)
        try:
            _link_under_key(hidden, final)
        except FileExistsError:
            pass  # a writer stored the same bytes again meanwhile
        except FileNotFoundError:
            return False
        hidden.unlink(missing_ok=True)
        return True

    def purge_hidden(self, sha256: str) -> bool:
        try:
            (self.trash_dir / sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def hidden_hashes(self) -> Iterator[str]:
        if self.trash_dir.is_dir():
            yield from sorted(p.name for p in self.trash_dir.iterdir() if is_sha256(p.name))

    def modified_at(self, sha256: str) -> float | None:
        """When the blob was put under its key: a hard-linked input keeps the generator's mtime,
        but the link moved its ctime, so the later of the two."""
        try:
            st = self.path(sha256).stat()
        except FileNotFoundError:
            return None
        return max(st.st_mtime, st.st_ctime)

    def iter_hashes(self) -> Iterator[str]:
        base = self.root / "objects"
        for first in sorted(base.glob("[0-9a-f][0-9a-f]")):
            if first.is_dir():  # (a stray file with a folder's name holds no blobs)
                blobs = first.glob("[0-9a-f][0-9a-f]/*") if self.levels == 2 else first.iterdir()
                yield from sorted(blob.name for blob in blobs if is_sha256(blob.name))

    def flush(self) -> None:
        """One syncfs for the whole batch instead of an fsync per blob (same guarantee, far
        cheaper for thousands of small files), then Delta may point at the blobs."""
        if not self.durable:
            return
        fd = os.open(self.root / "objects", os.O_RDONLY)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.syncfs(fd) != 0:
                os.sync()
        except (OSError, AttributeError):
            os.sync()
        finally:
            os.close(fd)

    def _clean_stale_tmp(self) -> None:
        """Remove temp files a crashed writer left behind: those whose writing process is gone
        (the pid is in the name), and any older than a day whatever their name says."""
        cutoff = time.time() - _STALE_TMP_S
        for tmp in self.tmp_dir.iterdir():
            try:
                if not _writer_alive(tmp.name) or tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except FileNotFoundError:
                pass
