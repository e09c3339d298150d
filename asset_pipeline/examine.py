"""The per-file half of an ingest — parse the sidecar, resolve the asset, hash, detect and
validate the format, and (where the store allows it) write the blob — kept in a module with
light imports so it runs in worker processes.

Per-file Python work (Pillow's chunk walk, JSON, stat) holds the GIL; with thousands of small
files, threads stall on it while processes scale with the cores. A file of up to `WHOLE_READ_MAX`
is read once: the same bytes are hashed, checked and written, so the disk and page cache see one
read instead of three, and the blob is exactly the bytes that were hashed. Larger files stream
(memory stays flat for a 100 GB model)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from asset_pipeline.errors import InputRejected
from asset_pipeline.failpoints import failpoint
from asset_pipeline.formats import FormatInfo, Source, inspect_file
from asset_pipeline.hashing import hash_file, hash_stream
from asset_pipeline.identity import asset_id_for, default_name
from asset_pipeline.inbox import InboxItem
from asset_pipeline.provenance.record import Provenance, add_content_facts, generation_metadata
from asset_pipeline.sidecar import SIDECAR_SUFFIX, Sidecar
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
    stat_before: tuple[int, int]  # (size, mtime_ns) before the content was read
    asset_id: str
    name: str
    project: str
    written: bool | None = None   # None: not stored yet; else whether this input wrote the blob
    intact: bool = True           # False: the file changed while it was read or copied
    provenance: Provenance | None = None  # field sources, pHash, C2PA, inputs (provenance/record.py)


@dataclass
class Rejection:
    item: InboxItem
    reason: str
    field: str | None


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
    name = sidecar.name or default_name(rel)
    return asset_id_for(sidecar.project, name), name, sidecar.project


def _unchanged(ex: Examined) -> bool:
    try:
        after = os.stat(ex.item.path)
    except FileNotFoundError:
        return False
    return (after.st_size, after.st_mtime_ns) == ex.stat_before and after.st_size == ex.size


def store_examined(ex: Examined, store: ObjectStore, content: bytes | None = None, write: bool = True) -> Examined:
    """Write the blob (unless `write` is False: another input of this batch writes those bytes)
    and check the input did not change meanwhile; sets `written` and `intact`.

    From memory the blob is by construction the hashed bytes, so a change only marks the input
    not ready. A streamed copy may hold newer bytes than the hash: it is kept only if it matches."""
    if content is not None:
        ex.intact = _unchanged(ex)
        ex.written = store.put_bytes(content, ex.sha256) if ex.intact and write else False
        return ex
    ex.written = store.put_file(ex.item.path, ex.sha256) if write else False
    ex.intact = _unchanged(ex)
    if not ex.intact and ex.written:
        with store.open(ex.sha256) as f:
            if hash_stream(f)[0] != ex.sha256:
                store.delete(ex.sha256)
    return ex


def examine(item: InboxItem, known_versions: frozenset[str] = frozenset(),
            store: ObjectStore | None = None) -> Examined | Rejection | NotReady:
    """Never raises for bad input: every problem becomes a Rejection naming the file or field.

    `known_versions` ("asset_id:sha256") are contents that already are versions of their asset:
    their format is not checked again. With `store`, the blob is written here, by the process
    that holds the bytes."""
    failpoint("examine-item")
    try:
        if item.orphan_sidecar:
            media = item.rel[: -len(SIDECAR_SUFFIX)]
            raise InputRejected(f"sidecar has no media file next to it (expected '{media}')", "sidecar")
        sidecar_raw = item.sidecar.read_bytes() if item.sidecar is not None else None
        st = os.stat(item.path)
        content: bytes | None = None
        if st.st_size <= WHOLE_READ_MAX:
            with open(item.path, "rb", buffering=0) as f:
                content = f.read()
            sha, size = hashlib.sha256(content).hexdigest(), len(content)
        else:
            sha, size = hash_file(item.path)
        source: Source = content if content is not None else item.path
        # The sidecar, or what the file embeds (A1111/ComfyUI/EXIF/XMP), field by field.
        sidecar, provenance = generation_metadata(item.rel, sidecar_raw, source)
        ident = (sidecar.asset_id, "", "") if sidecar.asset_id else resolve_identity(sidecar, item.rel, {})
        info = None if f"{ident[0]}:{sha}" in known_versions else inspect_file(source)
        if info is not None:
            add_content_facts(provenance, source, info.type, info.format)
        ex = Examined(item, sidecar, info, sha, size, (st.st_size, st.st_mtime_ns), *ident, provenance=provenance)
        if store is not None and not sidecar.asset_id:
            store_examined(ex, store, content)
        return ex
    except InputRejected as exc:
        return Rejection(item, exc.reason, exc.field)
    except FileNotFoundError:
        return NotReady(item)


def examine_many(items: list[InboxItem], known_versions: frozenset[str] = frozenset(),
                 store: ObjectStore | None = None) -> list[Examined | Rejection | NotReady]:
    """One task for a worker: everything it needs travels with the task (a small pickle: only the
    known versions of these items), so concurrent ingests in one process never share state."""
    return [examine(i, known_versions, store) for i in items]
