"""Ingest: inbox inputs → blobs in the object store → rows in the Delta tables.

Order of effects, chosen so that a crash anywhere converges on re-run:
1. each input is validated, hashed, and its blob written under its hash (a temp file linked into place,
   or a consumed input's own inode linked under its key);
2. the store is flushed, so no row can point at a blob that is not durable;
3. new versions are committed (one Delta merge keyed on (asset, version), re-planned when a
   concurrent run took a number), then asset rows (one merge);
4. blobs the new versions relied on without writing them are checked again (a concurrent sweep
   may have hidden one; it is unhidden or stored again from its input);
5. rejected inputs get an ``ingest_errors`` row (id from the input, not the message), then move
   to quarantine (a kept inbox: they stay where they are);
6. a consumed inbox loses the committed inputs (media file, then sidecar), each only if it still
   is the file that was ingested; a kept inbox remembers their hashes in the hash cache.
A re-run re-hashes, finds blobs present (no write), finds versions present (no new row) and
repairs any asset row a crash left stale. Identity is deterministic (project + name → id),
so nothing is ingested twice.

An inbox of any size streams through in batches (`ingest_stream`), so what the run holds of its
inputs is bounded by the batch, not the inbox. Batches are committed in order, one at a time,
and a batch's commit runs while the worker processes examine the next one: the commit is serial
work of this process (Delta merges, JSON, unlinks) that would otherwise leave the workers idle.
The inbox is only ever listed while no commit runs (the next batch is listed before the current
one's commit starts), so the listing never pairs files with sidecars in an inbox that a commit
is consuming or quarantining mid-way.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import multiprocessing
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from asset_pipeline.errors import InputRejected, ObjectMissing
from asset_pipeline.examine import (
    Examined,
    Rejection,
    die_with_parent,
    examine_many,
    inspect_input,
    reattach,
    resolve_identity,
    restore_from_input,
    store_examined,
)
from asset_pipeline.failpoints import failpoint
from asset_pipeline.formats import ValidationLimits
from asset_pipeline.hashcache import HashCache, Known, Refused
from asset_pipeline.inbox import InboxItem, move_to_quarantine
from asset_pipeline.location import Location
from asset_pipeline.provenance.record import version_columns
from asset_pipeline.sidecar import SIDECAR_SUFFIX
from asset_pipeline.sql import connect
from asset_pipeline.store import ObjectStore
from asset_pipeline.tables import CommitConflict, Tables

Progress = Callable[[int, int], None]  # (files done, bytes done)
PROCESS_POOL_MIN_ITEMS = 256
# Inputs per commit: what the run holds of its inputs is bounded by it, not by the inbox. A commit's
# merges read the whole target table whatever the batch (deltalake: ~2 s and ~750 MB a merge at 1M
# rows), so their cost grows with the home, and a large home wants few, large batches.
BATCH_FILES = 10_000
BATCH_BYTES = 64 * 1024**3
SUMMARY_ROWS = 100  # previews and errors a summary keeps (the tables hold every row)

# Columns of `assets` that follow the current version; status and usage belong to other
# processes (lifecycle, usage) and are never overwritten by an ingest.
VERSION_FOLLOWING = (
    "type", "format", "size_bytes", "width", "height", "duration_s", "model", "prompt", "seed",
    "parameters", "tags", "extra", "current_version", "current_sha256", "updated_at",
)


@dataclass
class StoredBatch:
    """What the store step hands to the commit step: `accepted` inputs are stored and intact."""

    accepted: list[Examined] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    leftovers: list[InboxItem] = field(default_factory=list)  # sidecars of inputs consumed by a crashed run
    known: int = 0        # inputs the hash cache vouched for: unchanged since committed, not examined
    known_bytes: int = 0

    @property
    def bytes_in(self) -> int:
        return sum(a.size for a in self.accepted)

    @property
    def bytes_written(self) -> int:
        return sum(a.size for a in self.accepted if a.written)


@dataclass
class IngestSummary:
    run_id: str
    inputs: int = 0
    new_versions: int = 0
    new_assets: int = 0
    unchanged: int = 0
    deduplicated: int = 0
    rejected: int = 0
    not_ready: int = 0
    bytes_in: int = 0
    bytes_stored: int = 0
    bytes_copied: int = 0      # stored by writing bytes (another filesystem, S3, a kept inbox without reflinks)
    hashed: int = 0            # inputs whose content was read this run (the rest: hash cache)
    consumed: int = 0          # inputs removed from the inbox after their commit
    batches: int = 0
    preview: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    replica: Any = None  # a ReplicaReport when the store has a replica

    @property
    def dedup_ratio(self) -> float:
        """Fraction of the accepted bytes that were already in the store (0.0: all new)."""
        return 1.0 - self.bytes_stored / self.bytes_in if self.bytes_in else 0.0

    def add(self, other: IngestSummary) -> IngestSummary:
        """Fold a batch's summary into the run's."""
        for name in ("inputs", "new_versions", "new_assets", "unchanged", "deduplicated", "rejected", "not_ready",
                     "bytes_in", "bytes_stored", "bytes_copied", "hashed", "consumed", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.preview += other.preview[: max(0, SUMMARY_ROWS - len(self.preview))]
        self.errors += other.errors[: max(0, SUMMARY_ROWS - len(self.errors))]
        return self


def _now() -> datetime:
    return datetime.now(UTC)


def _examiner(n_items: int, workers: int) -> Executor:
    """Processes for many files (per-file Python work holds the GIL), threads for a few (no start-up).

    The workers are forked: spawn/forkserver would re-import the caller's ``__main__``, which
    breaks any script that calls an ingest without an ``if __name__ == "__main__"`` guard. The
    forked children only run `examine` (Pillow, hashlib, json, plain file writes) and touch none
    of the parent's thread-owned state (DuckDB, Delta); each dies with its parent."""
    if n_items >= PROCESS_POOL_MIN_ITEMS and workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=die_with_parent)
    return ThreadPoolExecutor(max_workers=max(1, workers))


def _chunks(items: list[InboxItem], max_items: int = 32, max_bytes: int = 256 * 1024 * 1024) -> list[list[InboxItem]]:
    out: list[list[InboxItem]] = []
    cur: list[InboxItem] = []
    size = 0
    for item in items:
        if cur and (len(cur) >= max_items or size + item.size > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += item.size
    return out + ([cur] if cur else [])


@dataclass
class Pools:
    """The run's worker pools, kept across its batches (workers fork once, not once a batch)."""

    examiner: Executor
    writer: ThreadPoolExecutor


def open_pools(stack: ExitStack, first_batch: int, workers: int) -> Pools:
    return Pools(stack.enter_context(_examiner(first_batch, workers)),
                 stack.enter_context(ThreadPoolExecutor(max(1, workers))))


def _leftover(item: InboxItem, committed_at: dict[str, datetime]) -> bool:
    """A sidecar left alone by a consuming run that died between removing an input's media file
    and its sidecar: its media path was committed after the sidecar was last written."""
    media = item.rel[: -len(SIDECAR_SUFFIX)]
    return media in committed_at and committed_at[media].timestamp() * 1e9 >= item.mtime_ns


def store_items(
    items: list[InboxItem],
    store: ObjectStore,
    tables: Tables,
    workers: int = 2,
    progress: Progress | None = None,
    limits: ValidationLimits = ValidationLimits(),
    *,
    pools: Pools | None = None,
    cache: HashCache | None = None,
    give_inode: bool = False,
    consume: bool = False,
    before_lookup: Callable[[], None] | None = None,
) -> StoredBatch:
    """Validate, hash and store every input, in `workers` processes, biggest files first so no
    worker idles at the end. Content is hashed before it is written, so known content is never
    copied. A local store is written by the worker that hashed the file (it still holds the
    bytes) — or adopted without a copy (`give_inode`: hard links of inputs that the run then
    consumes); other stores are written by `workers` threads here, overlapped with examination.
    Inputs whose sidecar names an existing asset are checked against the `assets` rows of just
    those ids before they are stored, so no ingest reads the whole table. With `cache`, inputs
    whose stamp it knows are not read when their content already is a version of their asset,
    nor rejects it remembers refusing under the same `limits.checks`.
    With `consume`, sidecars that a crashed consuming run left behind are set aside as leftovers.
    `before_lookup` runs before sidecars' asset ids are looked up: the caller's previous batch,
    still committing, may be creating those assets."""
    batch = StoredBatch()
    if consume:
        orphans = [i for i in items if i.orphan_sidecar]
        committed_at = _committed_at(tables, [i.rel[: -len(SIDECAR_SUFFIX)] for i in orphans])
        batch.leftovers = [i for i in orphans if _leftover(i, committed_at)]
        items = [i for i in items if i not in batch.leftovers] if batch.leftovers else items
    done = [0, 0]
    if cache is not None:  # a kept inbox's unchanged rejects: refused again without reading them
        refused = cache.refused(((i.rel, i.stamp, i.sidecar_stamp) for i in items if _stamped(i)), limits.checks)
        again = [i for i in items if _stamped(i) and i.rel in refused]
        for i in again:
            batch.rejected.append(Rejection(i, refused[i.rel].reason, refused[i.rel].field, remembered=True))
            done[0] += 1
            done[1] += i.size
        items = _without(items, again)
    # Content that already is a version of its asset needs no format check again (re-runs).
    rels = sorted({i.rel for i in items})
    known_by_rel: dict[str, set[str]] = {}
    rows = tables.read_keyed("asset_versions", "source_path", rels,
                             columns=["source_path", "asset_id", "version", "sha256"]).to_pylist()
    # A consumed inbox's inputs are new submissions: one equal to a pruned version is checked and
    # committed again as a new version (see commit_versions), so it is not "known".
    pruned = _pruned_versions(tables, {r["asset_id"] for r in rows}) if consume and rows else set()
    for r in rows:
        if (r["asset_id"], r["version"]) not in pruned:
            known_by_rel.setdefault(r["source_path"], set()).add(f"{r['asset_id']}:{r['sha256']}")
    cached = cache.lookup((i.rel, i.stamp) for i in items if _stamped(i) and i.rel in known_by_rel) \
        if cache is not None else {}
    if cached:  # unchanged since committed (file and sidecar), still a version, blob there: nothing to examine
        unchanged = [i for i in items if _stamped(i) and i.rel in cached
                     and _still_known(i, cached[i.rel], known_by_rel, store)]
        batch.known, batch.known_bytes = len(unchanged), sum(i.size for i in unchanged)
        done[0] += batch.known
        done[1] += batch.known_bytes
        items = _without(items, unchanged)
    if progress and done[0]:
        progress(*done)
    order = sorted(items, key=lambda i: -i.size)
    worker_store = store if store.process_safe else None

    def task(chunk: list[InboxItem]) -> tuple:
        known = frozenset().union(*(known_by_rel.get(i.rel, ()) for i in chunk))
        return (chunk, known, worker_store, limits, {i.rel: cached[i.rel].sha256 for i in chunk if i.rel in cached},
                give_inode)

    claimed: set[str] = set()  # hashes a writer thread of this batch already stores
    withdrawn: set[str] = set()  # hashes whose writer found its file changed mid-copy

    def tick(item: InboxItem) -> None:
        done[0] += 1
        done[1] += item.size
        if progress:
            progress(done[0], done[1])

    def settle(ex: Examined) -> None:
        if ex.intact:
            batch.accepted.append(ex)
        else:
            withdrawn.add(ex.sha256)
            batch.not_ready.append(ex.item.rel)
        tick(ex.item)

    with ExitStack() as stack:
        if pools is None:
            pools = open_pools(stack, len(order), workers)
        examiner, writer = pools.examiner, pools.writer
        puts = []
        naming: list[Examined] = []  # sidecars that name an existing asset: looked up below

        def put(ex: Examined) -> None:  # a process-safe store's hard link settles races by itself
            puts.append(writer.submit(store_examined, ex, store, None,
                                      store.process_safe or ex.sha256 not in claimed, give_inode))
            claimed.add(ex.sha256)

        failpoint("examine")
        tasks = {examiner.submit(examine_many, *task(chunk)): chunk for chunk in _chunks(order)}
        for fut in as_completed(tasks):
            for result in reattach(tasks[fut], fut.result()):
                if isinstance(result, Examined):
                    if result.written is not None:
                        settle(result)
                    elif result.sidecar.asset_id:
                        naming.append(result)
                    else:
                        put(result)
                    continue
                if isinstance(result, Rejection):
                    batch.rejected.append(result)
                else:
                    batch.not_ready.append(result.item.rel)
                tick(result.item)
        if naming and before_lookup is not None:
            before_lookup()
        known = _assets_named(tables, {ex.sidecar.asset_id for ex in naming})
        for ex in naming:
            try:
                ex.asset_id, ex.name, ex.project = resolve_identity(ex.sidecar, ex.item.rel, known)
            except InputRejected as exc:
                batch.rejected.append(Rejection(ex.item, exc.reason, exc.field, by_content=False))
                tick(ex.item)
            else:
                put(ex)
        for fut in puts:
            settle(fut.result())
    if withdrawn:  # inputs that relied on a withdrawn writer's copy need the blob to be there
        missing = {sha for sha in withdrawn if not store.exists(sha)}
        batch.not_ready += [a.item.rel for a in batch.accepted if a.sha256 in missing]
        batch.accepted = [a for a in batch.accepted if a.sha256 not in missing]
    batch.accepted.sort(key=lambda a: (a.sidecar.created_at or datetime.fromtimestamp(
        a.item.mtime_ns / 1e9, UTC), a.item.rel))
    batch.rejected.sort(key=lambda r: r.item.rel)
    return batch


def _stamped(item: InboxItem) -> bool:
    """The listing stamped the input and its sidecar (a local inbox), and its name is its path
    (not a name shown escaped, which another file's real name may equal): the hash cache can vouch."""
    return item.stamp is not None and (item.sidecar is None or item.sidecar_stamp is not None) \
        and item.on_disk is None


def _without(items: list[InboxItem], taken: list[InboxItem]) -> list[InboxItem]:
    """`items` less the very items in `taken` (by identity: two inputs may show the same path)."""
    gone = {id(i) for i in taken}
    return [i for i in items if id(i) not in gone] if gone else items


def _still_known(item: InboxItem, known: Known, known_by_rel: dict[str, set[str]], store: ObjectStore) -> bool:
    """The cache's entry still holds: the sidecar is the one committed with the file, the tables
    still have that content as a version of that asset, and (local store) the blob is there —
    so a re-run also puts back a blob that went missing."""
    side = item.sidecar_stamp.key if item.sidecar_stamp is not None else ""
    return (side == known.sidecar and f"{known.asset_id}:{known.sha256}" in known_by_rel.get(item.rel, ())
            and (not store.process_safe or store.exists(known.sha256)))


def _committed_at(tables: Tables, rels: list[str]) -> dict[str, datetime]:
    """When each of these inbox paths was last committed as a version."""
    got = tables.read_keyed("asset_versions", "source_path", rels, columns=["source_path", "recorded_at"]).to_pylist()
    out: dict[str, datetime] = {}
    for r in got:
        out[r["source_path"]] = max(out.get(r["source_path"], r["recorded_at"]), r["recorded_at"])
    return out


def _assets_named(tables: Tables, ids: set[str]) -> dict[str, tuple[str, str]]:
    """id → (name, project) of those of `ids` that exist."""
    got = tables.read_keyed("assets", "id", ids, columns=["id", "name", "project"])
    return dict(zip(got["id"].to_pylist(), zip(got["name"].to_pylist(), got["project"].to_pylist())))


def _version_row(a: Examined, version: int, previous: str | None, run_id: str, now: datetime) -> dict:
    s = a.sidecar
    if a.info is None:  # skipped as already known when examined; a concurrent change made it new again
        a.info = inspect_input(a.item)
    return {
        "asset_id": a.asset_id, "version": version, "sha256": a.sha256, "size_bytes": a.size,
        "type": a.info.type, "format": a.info.format, "width": a.info.width, "height": a.info.height,
        "duration_s": a.info.duration_s,
        "created_at": s.created_at or datetime.fromtimestamp(a.item.mtime_ns / 1e9, UTC),
        "created_by": s.created_by, "model": s.model, "prompt": s.prompt, "seed": s.seed,
        "parameters": json.dumps(s.parameters, sort_keys=True), "tags": s.tags,
        "extra": json.dumps({**s.extra, **({"format": a.info.details} if a.info.details else {})}, sort_keys=True),
        "change_description": s.change_description or ("initial version" if version == 1 else "new version"),
        "previous_sha256": previous, "source_path": a.item.rel, "run_id": run_id, "recorded_at": now,
        **version_columns(a.provenance, s.parameters, s.extra),  # provenance (issue 14)
    }


def asset_row(latest: dict, first: dict, name: str, project: str, now: datetime) -> dict:
    """The `assets` row for an asset whose newest version is `latest` (and oldest `first`)."""
    row = {k: latest[k] for k in ("type", "format", "size_bytes", "width", "height", "duration_s", "created_by",
                                   "model", "prompt", "seed", "parameters", "tags", "extra")}
    row.update(
        id=latest["asset_id"], name=name, project=project, created_at=first["created_at"], status="active",
        deleted_at=None, current_version=latest["version"], current_sha256=latest["sha256"],
        download_count=0, last_accessed=None, ingested_at=now, updated_at=now,
    )
    return row


def _versions_of(tables: Tables, asset_ids: Iterable[str]) -> dict[str, list[dict]]:
    ids = sorted(set(asset_ids))
    out: dict[str, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    for row in tables.read_keyed("asset_versions", "asset_id", ids).to_pylist():
        out[row["asset_id"]].append(row)
    for rows in out.values():
        rows.sort(key=lambda r: r["version"])
    return out


def commit_versions(accepted: list[Examined], tables: Tables, run_id: str, *, revive_pruned: bool = True,
                    force: bool = False) -> tuple[list[dict], int]:
    """Append a version row for each input whose content is not yet a version of its asset, then
    bring the `assets` rows of every touched asset up to date. Returns (the rows this run
    committed, inputs that were already versions).

    Version numbers are planned from the history as read, then merged on (asset_id, version):
    when another run takes a number first, Delta rejects one of the two merges (or the key
    matches), and the inputs that did not land are planned again from the new history. Only rows
    carrying this run's id count as its own, so two runs never both report the same version.
    Raises CommitConflict when the retries run out: a commit that did not happen never passes
    for "unchanged". `force` adds a version even when the content already is one (a revert)."""
    now = _now()
    names = {a.asset_id: (a.name, a.project) for a in accepted}
    new_rows: list[dict] = []
    remaining = list(accepted)
    # A version pruned by retention no longer holds its content (its bytes go after the grace
    # period): the same content submitted again is a new version, not "unchanged". Only for new
    # submissions (`revive_pruned`): an input that merely stayed in a kept inbox must not bring an
    # old take back. (Looked up only for content that matches a version.)
    pruned: set[tuple[str, int]] = set()
    if not force and remaining:  # content that already is a version of its asset (re-runs): three columns decide
        incoming = {(a.asset_id, a.sha256) for a in remaining}
        matching = {(i, v, sha) for i, v, sha, _ in _version_keys(tables, names) if (i, sha) in incoming}
        pruned = _pruned_versions(tables, {i for i, _, _ in matching}) if matching and revive_pruned else set()
        have = {(i, sha) for i, v, sha in matching if (i, v) not in pruned}
        remaining = [a for a in remaining if (a.asset_id, a.sha256) not in have]
    settled: dict[str, list[dict]] | None = None  # histories as the table now holds them
    for _ in range(tables.commit_retries):
        existing = _versions_of(tables, {a.asset_id for a in remaining})
        planned: list[dict] = []
        for a in remaining:
            history = existing[a.asset_id]
            if not force and any(v["sha256"] == a.sha256 and (a.asset_id, v["version"]) not in pruned
                                 for v in history):
                continue  # already a version of this asset (re-run, or a duplicate input)
            previous = history[-1] if history else None
            row = _version_row(a, (previous["version"] + 1) if previous else 1,
                               previous["sha256"] if previous else None, run_id, now)
            history.append(row)
            planned.append(row)
        failpoint("before-commit")
        if not planned:
            settled = existing
            break
        result = tables.merge("asset_versions", planned, keys=("asset_id", "version"), update=False)
        if int(result.get("num_target_rows_inserted", 0)) == len(planned):
            new_rows += planned
            settled = existing
            break
        ours = {(i, v, sha) for i, v, sha, run in _version_keys(tables, {r["asset_id"] for r in planned})
                if run == run_id}
        got = [r for r in planned if (r["asset_id"], r["version"], r["sha256"]) in ours]
        new_rows += got
        done = {(r["asset_id"], r["sha256"]) for r in got}
        remaining = [a for a in remaining if (a.asset_id, a.sha256) not in done]
    else:
        # What did land keeps its `assets` rows in step (the inputs stay in the inbox: a re-run
        # finds them committed and consumes them).
        refresh_assets(tables, {r["asset_id"]: names[r["asset_id"]] for r in new_rows}, now)
        raise CommitConflict(f"versions of {len(remaining)} inputs could not be committed: other runs kept "
                             f"taking their version numbers ({tables.commit_retries} attempts); re-run the ingest")
    unchanged = len(accepted) - len(new_rows)
    failpoint("between-tables")
    refresh_assets(tables, names, now, known=settled)
    return new_rows, unchanged


def verify_blobs(new_rows: list[dict], accepted: list[Examined], store: ObjectStore) -> list[str]:
    """After the commit, the blobs this run relied on without writing them must still be there.

    A concurrent sweep may have hidden such a blob between this run's existence check and its
    commit; the sweep re-checks references after hiding, so it restores the blob if it saw the
    commit — and if it did not, the blob is found missing here and unhidden or stored again from
    its input (still in the inbox: inputs leave only after the commit). Returns the hashes
    repaired."""
    wrote = {a.sha256 for a in accepted if a.written}
    source = {a.sha256: a for a in accepted}
    relied = sorted({r["sha256"] for r in new_rows} - wrote)
    repaired = []
    for sha in relied:
        if store.exists(sha):
            continue
        if not store.unhide(sha):
            ex = source.get(sha)
            if ex is None or not restore_from_input(ex, store):  # read without following a link
                raise ObjectMissing(f"blob {sha} of {ex.item.rel if ex else 'a new version'} was collected "
                                    "while this run committed it, and the input no longer holds those bytes")
        repaired.append(sha)
    if repaired:
        store.flush()
    return repaired


def _version_keys(tables: Tables, asset_ids: Iterable[str]) -> set[tuple[str, int, str, str]]:
    """(asset_id, version, sha256, run_id) of every version of these assets."""
    got = tables.read_keyed("asset_versions", "asset_id", asset_ids,
                            columns=["asset_id", "version", "sha256", "run_id"])
    return set(zip(got["asset_id"].to_pylist(), got["version"].to_pylist(), got["sha256"].to_pylist(),
                   got["run_id"].to_pylist()))


def _pruned_versions(tables: Tables, asset_ids: Iterable[str]) -> set[tuple[str, int]]:
    """(asset_id, version) of these assets' versions that a keep-last-N policy pruned."""
    got = tables.read_keyed("lifecycle_actions", "asset_id", asset_ids,
                            where="action = 'prune_version' and not dry_run", columns=["asset_id", "version"])
    return set(zip(got["asset_id"].to_pylist(), got["version"].to_pylist()))


def refresh_assets(tables: Tables, names: dict[str, tuple[str, str]], now: datetime | None = None,
                   known: dict[str, list[dict]] | None = None) -> int:
    """Upsert `assets` rows whose current version lags behind `asset_versions` (or are missing).

    One query finds the lagging ids (usually none), so a no-change run reads no version rows;
    `known` histories (what the caller just wrote) are used as they are when their newest row is
    the table's newest, so a first ingest does not read back what it wrote.
    Only version-following columns are updated, so status and usage survive, and only to a newer
    version than the row holds, so concurrent runs that finish out of order leave the newest."""
    if not names:
        return 0
    now = now or _now()
    con = connect(tables, ["assets", "asset_versions"])
    try:
        lagging = con.execute(
            """select v.asset_id, v.latest, v.sha256
               from (select asset_id, max(version) latest, arg_max(sha256, version) sha256 from asset_versions
                     where asset_id in (select unnest($ids)) group by asset_id) v
               left join assets a on a.id = v.asset_id
               where a.current_version is distinct from v.latest""", {"ids": sorted(names)}).fetchall()
    finally:
        con.close()
    known = known or {}
    versions = {i: known[i] for i, latest, sha in lagging
                if known.get(i) and (known[i][-1]["version"], known[i][-1]["sha256"]) == (latest, sha)}
    versions.update(_versions_of(tables, [i for i, _, _ in lagging if i not in versions]))
    rows = [asset_row(h[-1], h[0], *names[i], now) for i, h in versions.items() if h]
    failpoint("before-assets-merge")
    if rows:  # status and usage columns belong to lifecycle and usage: only these follow the version
        # Only forward: a run that read the history before another run committed a newer version
        # (and wrote its row) must not turn the row back. Version rows are never removed, so
        # the newest version only grows, and a merge retried after a conflict re-checks this.
        tables.merge("assets", rows, keys=("id",), columns=VERSION_FOLLOWING,
                     changed="t.current_version is null or s.current_version > t.current_version")
    return len(rows)


def error_id_for(item: InboxItem, field: str | None) -> str:
    """A reject's id: the input as it is on disk (path, size, mtime of file and sidecar) and the
    field at fault — never the message, which may hold addresses or timings that change between
    runs. A re-run after a crash finds the same id; a rewritten input is a new reject."""
    side = ""
    if item.sidecar is not None:
        try:
            st = os.stat(item.sidecar)
            side = f"{st.st_size}:{st.st_mtime_ns}"
        except FileNotFoundError:
            pass
    # (by the name on disk: two names that are not UTF-8 may show the same escaped text)
    key = f"{item.disk_rel}\x00{item.size}\x00{item.mtime_ns}\x00{side}\x00{field or ''}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def commit_rejections(rejected: list[Rejection], tables: Tables, quarantine_root: Location | None, run_id: str,
                      on_moved: Callable[[Rejection], None] | None = None) -> list[dict]:
    """Record each rejection (idempotently, by a deterministic id), then move the input to
    ``<quarantine>/<error id>/<inbox path>``. The row is written first: a crash in between leaves
    the input in the inbox and a re-run finds the row already there. Without `quarantine_root`
    (a kept inbox) rejects are recorded and stay where they are; a re-scan records nothing new."""
    now = _now()
    rows = []
    for r in rejected:
        eid = error_id_for(r.item, r.field)
        rows.append({
            "error_id": eid, "source_path": r.item.rel,
            "sidecar_path": r.item.sidecar and (r.item.rel + SIDECAR_SUFFIX),
            "reason": r.reason, "field": r.field, "size_bytes": r.item.size, "sha256": None,
            "quarantine_path": (quarantine_root / eid[:16] / r.item.rel).uri
            if quarantine_root is not None and os.path.lexists(r.item.path) else None,
            "run_id": run_id, "recorded_at": now,
        })
    if quarantine_root is None and rows:  # a kept inbox shows its rejects to every scan: record them once
        # (one the hash cache remembers has its row: the entry was written after that row's commit)
        unsure = [row["error_id"] for r, row in zip(rejected, rows) if not r.remembered]
        have = set(tables.read_keyed("ingest_errors", "error_id", unsure, columns=["error_id"])["error_id"]
                   .to_pylist()) if unsure else set()
        new = [row for r, row in zip(rejected, rows) if not r.remembered and row["error_id"] not in have]
        if new:
            tables.merge("ingest_errors", new, keys=("error_id",), update=False)
        return rows
    tables.merge("ingest_errors", rows, keys=("error_id",), update=False)
    failpoint("before-quarantine")
    for r, row in zip(rejected, rows):
        move_to_quarantine(r.item, quarantine_root / row["error_id"][:16])
        if on_moved:
            on_moved(r)
    return rows


def commit_batch(batch: StoredBatch, store: ObjectStore, tables: Tables, quarantine_root: Location | None,
                 run_id: str, on_quarantined: Callable[[Rejection], None] | None = None,
                 consume: Callable[[StoredBatch], int] | None = None) -> IngestSummary:
    """Flush, commit versions and assets, check the blobs relied on, record rejects; then the
    committed inputs leave a consumed inbox (`consume`). (A kept inbox's hash cache learns them
    from the caller: `remember_committed`.)"""
    store.flush()
    # A consumed inbox holds new submissions only; a kept one also holds what was ingested before.
    new_rows, unchanged = commit_versions(batch.accepted, tables, run_id, revive_pruned=consume is not None)
    verify_blobs(new_rows, batch.accepted, store)
    errors = commit_rejections(batch.rejected, tables, quarantine_root, run_id, on_quarantined)
    failpoint("before-consume")
    consumed = consume(batch) if consume is not None else 0
    return IngestSummary(
        run_id=run_id,
        inputs=len(batch.accepted) + len(batch.rejected) + len(batch.not_ready) + batch.known,
        new_versions=len(new_rows),
        new_assets=sum(1 for r in new_rows if r["version"] == 1),
        unchanged=unchanged + batch.known,
        deduplicated=sum(1 for a in batch.accepted if not a.written),
        rejected=len(batch.rejected),
        not_ready=len(batch.not_ready),
        bytes_in=batch.bytes_in + batch.known_bytes,
        bytes_stored=batch.bytes_written,
        bytes_copied=sum(a.size for a in batch.accepted if a.placed == "copied"),
        hashed=sum(1 for a in batch.accepted if a.hashed) + sum(1 for r in batch.rejected if not r.remembered),
        consumed=consumed,
        batches=1,
        preview=[{"asset_id": r["asset_id"], "version": r["version"], "type": r["type"], "format": r["format"],
                  "size_bytes": r["size_bytes"], "source": r["source_path"]} for r in new_rows[:20]],
        errors=[{"source": e["source_path"], "field": e["field"] or "", "reason": e["reason"]} for e in errors],
    )


def batched(items: Iterable[InboxItem], max_files: int = BATCH_FILES,
            max_bytes: int = BATCH_BYTES) -> Iterator[list[InboxItem]]:
    """Consecutive batches of at most `max_files` inputs / `max_bytes` (one input may exceed it)."""
    batch: list[InboxItem] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= max_files or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def ingest_stream(items: Iterable[InboxItem], store: ObjectStore, tables: Tables, quarantine_root: Location | None,
                  run_id: str, *, workers: int = 2, progress: Progress | None = None,
                  limits: ValidationLimits = ValidationLimits(),
                  consume: Callable[[StoredBatch], int] | None = None, give_inode: bool = False,
                  cache: HashCache | None = None, verify: bool = False,
                  on_quarantined: Callable[[Rejection], None] | None = None,
                  batch_files: int = BATCH_FILES, batch_bytes: int = BATCH_BYTES) -> IngestSummary:
    """Ingest `items` (an iterator: the inbox is never listed whole) batch by batch; the worker
    pools live for the whole run. Each batch is committed in a thread while the next one is
    examined (see the module's docstring); commits never overlap each other. With `consume`, a
    batch's committed inputs leave the inbox right after its commit. `cache` (a kept inbox) skips
    reading inputs it knows unless `verify`, and learns what was committed."""
    summary = IngestSummary(run_id)
    done = [0, 0]
    checks = limits.checks if cache is not None else ""  # now: what this run's validators are

    def advance(files: int, nbytes: int) -> None:  # progress over the whole run, not per batch
        if progress:
            progress(done[0] + files, done[1] + nbytes)

    with ExitStack() as stack:
        pools = None
        committer = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="ingest-commit"))
        in_flight: tuple[Future[IngestSummary], StoredBatch] | None = None

        def finish_commit() -> None:
            """Wait for the commit in flight, fold its summary in; the hash cache (a SQLite
            connection of this thread) learns its inputs only now that they are committed."""
            nonlocal in_flight
            if in_flight is not None:
                (future, committed), in_flight = in_flight, None
                summary.add(future.result())
                if cache is not None:
                    remember_committed(cache, committed, checks)
                release_freed_memory()

        chunks = batched(items, batch_files, batch_bytes)
        chunk = next(chunks, None)
        while chunk is not None:
            pools = pools or open_pools(stack, len(chunk), workers)
            stored = store_items(chunk, store, tables, workers, advance, limits, pools=pools,
                                 cache=None if verify else cache, give_inode=give_inode,
                                 consume=consume is not None, before_lookup=finish_commit)
            finish_commit()
            following = next(chunks, None)  # listed now, while no commit moves inbox files
            in_flight = (committer.submit(commit_batch, stored, store, tables, quarantine_root, run_id,
                                          on_quarantined, consume), stored)
            done[0] += len(chunk)
            done[1] += sum(i.size for i in chunk)
            chunk = following
        finish_commit()
    return summary


def remember_committed(cache: HashCache, batch: StoredBatch, checks: str) -> None:
    """Only once the batch is committed: an entry vouches for its input, or for its reject's row.
    An accepted path's remembered reject goes (it must not outlive the acceptance, e.g. when the
    limits that refused it come back). A reject is remembered under the `checks` that refused it,
    and only when the file and sidecar it read are the ones listed (see `_rememberable`)."""
    committed = [a for a in batch.accepted if a.intact and a.stat_before is not None and a.item.stamp is not None]
    cache.remember((a.stat_before, a.sha256, a.sidecar_stamp, a.asset_id) for a in committed)
    cache.forget_refused(a.item.rel for a in committed)
    cache.remember_refused(((r.item.rel, r.item.stamp, r.item.sidecar_stamp, Refused(r.reason, r.field))
                            for r in batch.rejected if _rememberable(r)), checks)


def _rememberable(r: Rejection) -> bool:
    """The input's own bytes refused it (not the tables, not a failure outside the file), and
    what was read is what was listed: then the listed stamps stand for the refused content, and
    any later change to file or sidecar moves a ctime past them."""
    item = r.item
    return (r.by_content and not r.remembered and _stamped(item) and r.read_stamp == item.stamp
            and r.read_sidecar_stamp == item.sidecar_stamp)


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system after a batch. Arrow, DuckDB and
    deltalake free a batch's buffers, but glibc keeps the pages in its arenas (one per thread
    that allocated): a 20k-input run ended ~20 MB smaller with this than without."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def new_run_id() -> str:
    return uuid.uuid4().hex


def summary_table(summary: IngestSummary) -> pa.Table:
    return pa.Table.from_pylist(summary.preview)
