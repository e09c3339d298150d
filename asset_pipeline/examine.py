"""The CPU-heavy half of an ingest — parse the sidecar, detect and validate the format, hash —
kept in a module with light imports so it can run in worker processes.

Per-file Python work (Pillow's chunk walk, JSON, stat) holds the GIL; with thousands of small
files, threads stall on it while processes scale with the cores (measured here: 2 threads
850 MB/s, 2 processes 1,600 MB/s over 5,000 images + 5 large models)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from asset_pipeline.errors import InputRejected
from asset_pipeline.formats import FormatInfo, inspect_file
from asset_pipeline.hashing import hash_file
from asset_pipeline.identity import asset_id_for, default_name
from asset_pipeline.inbox import InboxItem
from asset_pipeline.sidecar import SIDECAR_SUFFIX, Sidecar, parse_sidecar

# "asset_id:sha256" pairs that are already versions; set in each worker by `init_worker`.
_known_versions: frozenset[str] = frozenset()


def init_worker(known_versions: frozenset[str]) -> None:
    """Pool initializer (forked workers receive the set without pickling)."""
    global _known_versions
    _known_versions = known_versions


@dataclass
class Examined:
    item: InboxItem
    sidecar: Sidecar
    info: FormatInfo | None  # None: content already a version of this asset, format not re-checked
    sha256: str
    size: int
    stat_before: tuple[int, int]  # (size, mtime_ns) before the content was read


@dataclass
class Rejection:
    item: InboxItem
    reason: str
    field: str | None


@dataclass
class NotReady:
    """The input vanished or changed while read; it stays in the inbox for the next run."""

    item: InboxItem


def examine(item: InboxItem) -> Examined | Rejection | NotReady:
    """Never raises for bad input: every problem becomes a Rejection naming the file or field."""
    try:
        if item.orphan_sidecar:
            media = item.rel[: -len(SIDECAR_SUFFIX)]
            raise InputRejected(f"sidecar has no media file next to it (expected '{media}')", "sidecar")
        if item.sidecar is None:
            raise InputRejected(f"no sidecar: expected '{item.rel}{SIDECAR_SUFFIX}' with the generation metadata",
                                "sidecar")
        sidecar = parse_sidecar(item.sidecar.read_bytes())
        st = os.stat(item.path)
        sha, size = hash_file(item.path)
        candidate = sidecar.asset_id or asset_id_for(sidecar.project, sidecar.name or default_name(item.rel))
        info = None if f"{candidate}:{sha}" in _known_versions else inspect_file(item.path)
        return Examined(item, sidecar, info, sha, size, (st.st_size, st.st_mtime_ns))
    except InputRejected as exc:
        return Rejection(item, exc.reason, exc.field)
    except FileNotFoundError:
        return NotReady(item)


def examine_many(items: list[InboxItem]) -> list[Examined | Rejection | NotReady]:
    return [examine(i) for i in items]
