"""The per-file half of an ingest — parse the sidecar, resolve the asset, hash, detect and
validate the format, and (where the store allows it) write the blob — kept in a module with
light imports so it runs in worker processes.

Per-file Python work (Pillow's chunk walk, JSON, stat) holds the GIL; with thousands of small
files, threads stall on it while processes scale with the cores. A file of up to `WHOLE_READ_MAX`
is read once: the same bytes are hashed, checked and written, so the disk and page cache see one
read instead of three, and the blob is exactly the bytes that were hashed. Larger files stream
(memory stays flat for a 100 GB model).

Every inbox file is opened with `open_in_inbox` (no symbolic link is followed, the sidecar's
neither) and read, checked and copied through that descriptor, so what is stored is the file
that was listed and hashed, never a link's target; a file replaced after it was hashed is
caught by its identity (device, inode), not only its size and time — and by its ctime, which the
kernel moves on every write and nothing can set back.

Where the store is on the input's filesystem the blob is published without a copy (a reflink
clone, or — when the inbox is consumed — a hard link of the very inode that was hashed, made
through its descriptor: `LocalObjectStore.adopt`). An input whose stamp matches the hash cache
and whose content already is a version of its asset is not hashed: only its sidecar is read."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from asset_pipeline.errors import InputRejected
from asset_pipeline.failpoints import failpoint
from asset_pipeline.filestamp import FileStamp
from asset_pipeline.formats import FormatInfo, Source, ValidationLimits, inspect_file
from asset_pipeline.hashing import hash_stream
from asset_pipeline.identity import asset_id_for
from asset_pipeline.inbox import InboxItem, fd_path, open_in_inbox
from asset_pipeline.provenance.record import Provenance, add_content_facts, generation_metadata
from asset_pipeline.sidecar import MAX_SIDECAR_BYTES, SIDECAR_SUFFIX, Sidecar, name_from_path, parse_sidecar
from asset_pipeline.store import ObjectStore

WHOLE_READ_MAX = 16 * 1024 * 1024


def die_with_parent() -> None:
    """Process-pool initializer: the worker is killed when the process that forked it dies, so a
    `kill -9` of an ingest never leaves workers (or the resource tracker they keep open) behind."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to arm
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


@dataclass
class Examined:
    """One input after examination; once stored (`written` set) and `intact`, ready to commit.
    A sidecar that names an existing asset (`asset_id`) leaves name and project empty and the blob
    unwritten: the caller checks the id against the table first."""

    item: InboxItem
    sidecar: Sidecar
    info: FormatInfo | None  # None: content already a version of this asset, format not re-checked
    sha256: str
    size: int
    stat_before: FileStamp | None  # the input's stamp when it was opened to be read (None: not an inbox file)
    asset_id: str
    name: str
    project: str
    written: bool | None = None   # None: not stored yet; else whether this input wrote the blob
    intact: bool = True           # False: the file changed while it was read or copied
    provenance: Provenance | None = None  # field sources, pHash, C2PA, inputs (provenance/record.py)
    file_id: tuple[int, int] | None = None  # (device, inode) of the file that was hashed
    sidecar_stamp: FileStamp | None = None  # the sidecar as it was read (consumed only if still so)
    hashed: bool = True           # False: the hash came from the hash cache, the content was not read
    placed: str | None = None     # how this input's bytes reached the store: cloned, linked, copied


@dataclass
class Rejection:
    item: InboxItem
    reason: str
    field: str | None
    # False: not decided by the input's bytes alone — by the tables (a sidecar naming an asset
    # that does not exist yet) or by a failure outside the file (memory, an I/O error): a kept
    # inbox's hash cache must not remember it.
    by_content: bool = True
    remembered: bool = False  # the hash cache's word (a kept inbox's unchanged reject): not read again
    # The file and sidecar as they were read (fstat of the descriptors; None: not read). The
    # cache remembers a reject only when these are the listed stamps: a folder swapped between
    # the listing and the read changes no ctime of the files under it.
    read_stamp: FileStamp | None = None
    read_sidecar_stamp: FileStamp | None = None


@dataclass
class _Read:
    """What `examine` has read so far, for the Rejection it may have to make."""

    stamp: FileStamp | None = None
    sidecar_stamp: FileStamp | None = None


def decided_by_content(exc: InputRejected) -> bool:
    """No cause in the reject's chain lies outside the file: a decoder that met memory running
    out or an I/O error of the disk (an OSError carrying an errno) may accept the file next time."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, MemoryError) or (isinstance(cause, OSError) and cause.errno is not None):
            return False
        cause = cause.__cause__ or cause.__context__
    return True


@dataclass
class NotReady:
    """The input vanished or changed while read; it stays in the inbox for the next run."""

    item: InboxItem


def resolve_identity(sidecar: Sidecar, rel: str, known: dict[str, tuple[str, str]]) -> tuple[str, str, str]:
    """(asset_id, name, project): the asset the sidecar names, or the one its project and name make."""
    if sidecar.asset_id:
        if sidecar.asset_id not in known:
            raise InputRejected(f"sidecar names asset_id '{sidecar.asset_id}', which does not exist", "asset_id")
        name, project = known[sidecar.asset_id]
        if sidecar.project != project:
            raise InputRejected(
                f"sidecar project '{sidecar.project}' differs from asset {sidecar.asset_id}'s project '{project}'",
                "project")
        return sidecar.asset_id, name, project
    name = sidecar.name or name_from_path(rel)
    return asset_id_for(sidecar.project, name), name, sidecar.project


def _unchanged(ex: Examined) -> bool:
    """The inbox path still names the very file that was hashed (lstat: a link put in its place
    is a change), unwritten since: same device, inode, size, mtime and ctime. A folder on the way
    swapped for a link to where the file now is passes this check — nothing is read through it
    (the bytes come from the hashed descriptor), and the consume refuses to remove anything
    through it (`consume.consume_local`)."""
    try:
        after = os.lstat(ex.item.path)
    except FileNotFoundError:
        return False
    return (stat.S_ISREG(after.st_mode) and ex.stat_before is not None
            and ex.stat_before.same_content(FileStamp.of(after)) and after.st_size == ex.size)


def _reopen(ex: Examined) -> int | None:
    """The input opened again to store it; None — and the input marked not written, not intact —
    when it was replaced by a link or is gone (not read, not ready)."""
    try:
        return open_in_inbox(ex.item.root, ex.item.rel)
    except (InputRejected, FileNotFoundError):
        ex.written, ex.intact = False, False
        return None


def _adopt(ex: Examined, store: ObjectStore, give_inode: bool, fd: int | None = None) -> bool:
    """Publish the input without copying where the store can (see `LocalObjectStore.adopt`);
    True when that settled the input (`written`, `intact`, `placed` set), False to copy instead.
    `fd`: the descriptor the input was hashed through, still open (not closed here); without
    it the input is opened again."""
    from asset_pipeline.store.local import InputChanged

    reopened = fd is None
    if reopened:
        fd = _reopen(ex)
        if fd is None:
            return True
    try:
        ex.intact = _unchanged(ex) and ex.stat_before.same_content(FileStamp.of(os.fstat(fd)))
        if not ex.intact:
            ex.written = False
            return True
        try:
            adopted = store.adopt(fd, ex.sha256, ex.stat_before, give_inode)
        except InputChanged:
            ex.intact, ex.written = False, False
            return True
    finally:
        if reopened:
            os.close(fd)
    if adopted is None:
        return False
    ex.written, how = adopted
    ex.placed = how if ex.written else None
    return True


def store_examined(ex: Examined, store: ObjectStore, content: bytes | None = None, write: bool = True,
                   give_inode: bool = False, fd: int | None = None) -> Examined:
    """Write the blob (unless `write` is False: another input of this batch writes those bytes)
    and check the input did not change meanwhile; sets `written`, `intact` and `placed`.

    On the store's filesystem the bytes are adopted, not copied (a clone, or a hard link when
    `give_inode`: the input is consumed after the commit) — through `fd` when the examination's
    descriptor is still open (the very inode that was hashed; opening the input again through
    the no-link walk costs a small input 7 more system calls), else through a new no-link open.
    From memory the blob is by construction the hashed bytes, so a change only marks the input
    not ready. A streamed copy may hold newer bytes than the hash: it is kept only if it matches."""
    if write and ex.stat_before is not None and hasattr(store, "adopt") and _adopt(ex, store, give_inode, fd):
        return ex
    if content is not None:
        ex.intact = _unchanged(ex)
        ex.written = store.put_bytes(content, ex.sha256) if ex.intact and write else False
        ex.placed = "copied" if ex.written else None
        return ex
    fd = _reopen(ex)
    if fd is None:
        return ex
    try:
        ex.written = store.put_file(fd_path(fd), ex.sha256) if write else False
        ex.placed = "copied" if ex.written else None
        opened = os.fstat(fd)
        ex.intact = _unchanged(ex) and ex.file_id in (None, (opened.st_dev, opened.st_ino))
    finally:
        os.close(fd)
    if not ex.intact and ex.written:
        with store.open(ex.sha256) as f:
            if hash_stream(f)[0] != ex.sha256:
                store.delete(ex.sha256)
    return ex


def inspect_input(item: InboxItem, limits: ValidationLimits = ValidationLimits()) -> FormatInfo:
    """Validate an input again, later in the run, through the same no-link open as `examine`."""
    fd = open_in_inbox(item.root, item.rel)
    try:
        return inspect_file(fd_path(fd), limits)
    finally:
        os.close(fd)


def restore_from_input(ex: Examined, store: ObjectStore) -> bool:
    """Store the blob again from the input it came from, if the input (reached without following
    a link) still holds exactly those bytes."""
    try:
        fd = open_in_inbox(ex.item.root, ex.item.rel)
    except (InputRejected, FileNotFoundError):
        return False
    try:
        with open(fd, "rb", buffering=0, closefd=False) as f:
            if hash_stream(f)[0] != ex.sha256:
                return False
        store.put_file(fd_path(fd), ex.sha256)
        return True
    finally:
        os.close(fd)


def read_sidecar(item: InboxItem) -> bytes:
    """The sidecar's bytes, never through a link, and never more than one byte past the size a
    sidecar may have (a 10 GB "sidecar" costs 1 MiB of memory to refuse)."""
    return read_sidecar_stamped(item)[0]


def read_sidecar_stamped(item: InboxItem) -> tuple[bytes, FileStamp]:
    """`read_sidecar`, and the sidecar's stamp as read (fstat of the same descriptor): a consumed
    inbox removes the sidecar only if it still is the one that was read."""
    rel = item.rel + SIDECAR_SUFFIX
    try:
        fd = open_in_inbox(item.root, rel)
    except InputRejected as exc:
        raise InputRejected(f"sidecar {exc.reason}", "sidecar") from exc
    with open(fd, "rb", buffering=0) as f:
        return f.read(MAX_SIDECAR_BYTES + 1), FileStamp.of(os.fstat(f.fileno()))


def examine(item: InboxItem, known_versions: frozenset[str] = frozenset(),
            store: ObjectStore | None = None, limits: ValidationLimits = ValidationLimits(),
            cached_sha: str | None = None, give_inode: bool = False) -> Examined | Rejection | NotReady:
    """Never raises for bad input: every problem becomes a Rejection naming the file or field.

    `known_versions` ("asset_id:sha256") are contents that already are versions of their asset:
    their format is not checked again. With `store`, the blob is written here, by the process
    that holds the bytes (adopted without a copy where the filesystem allows, see
    `store_examined`). `limits` bound what format validation decodes and accepts. `cached_sha`:
    the hash cache's entry for the input's listed stamp."""
    failpoint("examine-item")
    read = _Read()
    try:
        if item.refused:
            raise InputRejected(item.refused, "key")
        fd = open_in_inbox(item.root, item.rel)  # a link is refused here, before anything is read
        try:
            return _examine_open(item, fd, known_versions, store, limits, cached_sha, give_inode, read)
        finally:
            os.close(fd)
    except InputRejected as exc:
        return Rejection(item, exc.reason, exc.field, by_content=decided_by_content(exc), read_stamp=read.stamp,
                         read_sidecar_stamp=read.sidecar_stamp)
    except FileNotFoundError:
        return NotReady(item)


def _known_unread(item: InboxItem, sidecar_raw: bytes | None, source: Path, cached_sha: str, before: FileStamp,
                  known_versions: frozenset[str]) -> Examined | None:
    """An input the hash cache knows whose content already is a version of its asset: resolved
    from its sidecar (or, when the sidecar leaves identity to embedded metadata, from that
    metadata alone) without hashing or validating the file; None when the content is not a
    version of the asset it names (the full examination decides)."""
    try:
        sidecar = parse_sidecar(sidecar_raw) if sidecar_raw is not None else None
    except InputRejected:
        sidecar = None
    try:
        if sidecar is None:  # identity may come from the file's own metadata: read just that
            sidecar, _ = generation_metadata(item.rel, sidecar_raw, source)
        ident = (sidecar.asset_id, "", "") if sidecar.asset_id else resolve_identity(sidecar, item.rel, {})
    except InputRejected:
        return None
    if f"{ident[0]}:{cached_sha}" not in known_versions:
        return None
    return Examined(item, sidecar, None, cached_sha, before.size, before, *ident, file_id=(before.dev, before.ino),
                    hashed=False)


def _examine_open(item: InboxItem, fd: int, known_versions: frozenset[str], store: ObjectStore | None,
                  limits: ValidationLimits, cached_sha: str | None, give_inode: bool, read: _Read) -> Examined:
    st = os.fstat(fd)
    before = read.stamp = FileStamp.of(st)
    if item.orphan_sidecar:
        media = item.rel[: -len(SIDECAR_SUFFIX)]
        raise InputRejected(f"sidecar has no media file next to it (expected {media!r})", "sidecar")
    sidecar_raw, sidecar_stamp = read_sidecar_stamped(item) if item.sidecar is not None else (None, None)
    read.sidecar_stamp = sidecar_stamp
    # Trusted only while the blob is there: a re-run also puts back a blob that went missing.
    if cached_sha is not None and before == item.stamp and (store is None or store.exists(cached_sha)):
        quick = _known_unread(item, sidecar_raw, fd_path(fd), cached_sha, before, known_versions)
        if quick is not None:
            quick.sidecar_stamp, quick.written = sidecar_stamp, False
            quick.intact = _unchanged(quick)
            return quick
    content: bytes | None = None
    with open(fd, "rb", buffering=0, closefd=False) as f:
        if st.st_size <= WHOLE_READ_MAX:
            content = f.read()
            sha, size = hashlib.sha256(content).hexdigest(), len(content)
        else:
            sha, size = hash_stream(f)
    source: Source = content if content is not None else fd_path(fd)
    # The sidecar, or what the file embeds (A1111/ComfyUI/EXIF/XMP), field by field.
    sidecar, provenance = generation_metadata(item.rel, sidecar_raw, source)
    ident = (sidecar.asset_id, "", "") if sidecar.asset_id else resolve_identity(sidecar, item.rel, {})
    info = None if f"{ident[0]}:{sha}" in known_versions else inspect_file(source, limits)
    if info is not None:
        add_content_facts(provenance, source, info.format, info.phash)
    ex = Examined(item, sidecar, info, sha, size, before, *ident, provenance=provenance,
                  file_id=(st.st_dev, st.st_ino), sidecar_stamp=sidecar_stamp)
    if store is not None and not sidecar.asset_id:
        store_examined(ex, store, content, give_inode=give_inode, fd=fd)
    return ex


def examine_many(items: list[InboxItem], known_versions: frozenset[str] = frozenset(),
                 store: ObjectStore | None = None, limits: ValidationLimits = ValidationLimits(),
                 cached: dict[str, str] | None = None, give_inode: bool = False
                 ) -> list[Examined | Rejection | NotReady]:
    """One task for a worker: everything it needs travels with the task (a small pickle: only the
    known versions of these items, and the validation limits), so concurrent ingests in one
    process never share state. The results come back detached — `item` None, in the order of
    `items` — for the caller, which holds the items, to `reattach`: unpickling each result's item
    again cost the main process ~42 µs an input, three quarters of a result's unpickling."""
    cached = cached or {}
    results = [examine(i, known_versions, store, limits, cached.get(i.rel), give_inode) for i in items]
    for result in results:
        result.item = None  # type: ignore[assignment]  # reattached by the caller
    return results


def reattach(items: list[InboxItem], results: list[Examined | Rejection | NotReady]
             ) -> list[Examined | Rejection | NotReady]:
    """`examine_many`'s results with their items back (same order)."""
    for item, result in zip(items, results, strict=True):
        result.item = item
    return results
