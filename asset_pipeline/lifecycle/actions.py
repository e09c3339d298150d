"""Archive, restore, soft delete, undelete and hard delete — recorded in `lifecycle_actions`.

Metadata moves first, data follows: an action writes its audit rows (idempotent ids), then the
asset's status; `reconcile_blobs` then brings both object stores to the state the statuses ask
for, always copying before it deletes. A blob leaves the hot store only when no active or
soft-deleted (undeletable) version references it, and leaves the archive only when no archived
version does — the same bytes may belong to several assets after dedup. A crash anywhere leaves
every referenced blob in at least one store, and a re-run converges.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asset_pipeline.errors import AssetNotFound, LifecycleError, ObjectMissing
from asset_pipeline.failpoints import failpoint
from asset_pipeline.lifecycle.policies import Policy
from asset_pipeline.sql import connect
from asset_pipeline.store import ObjectStore
from asset_pipeline.tables import Tables


@dataclass
class SweepSummary:
    partition: str
    dry_run: bool
    selected: dict[str, int] = field(default_factory=dict)   # policy → assets
    archived: int = 0
    deleted: int = 0
    hard_deleted: int = 0
    bytes_moved: int = 0
    bytes_freed: int = 0
    audit_rows: int = 0
    problems: list[str] = field(default_factory=list)


def action_id(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Lifecycle:
    def __init__(self, tables: Tables, hot: ObjectStore, archive: ObjectStore, vectors_dir=None):
        self.tables, self.hot_store, self.archive_store, self.vectors_dir = tables, hot, archive, vectors_dir

    # --- reading state -----------------------------------------------------------------------
    def purged_ids(self) -> set[str]:
        return set(self.tables.read("lifecycle_actions", where="action = 'hard_delete' and not dry_run",
                                    columns=["asset_id"])["asset_id"].to_pylist())

    def _versions(self, where: str, params: list) -> list[dict]:
        con = connect(self.tables, ["assets", "asset_versions"])
        try:
            return con.sql(f"""select a.id as asset_id, a.status, a.deleted_at, v.version, v.sha256, v.size_bytes
                               from assets a join asset_versions v on v.asset_id = a.id where {where}
                               order by a.id, v.version""", params=params or None).to_arrow_table().to_pylist()
        finally:
            con.close()

    def select(self, policy: Policy, as_of: datetime) -> list[str]:
        where, params = policy.where(as_of)
        return self.tables.read("assets", where=where, params=params, columns=["id"])["id"].to_pylist()

    # --- recording ---------------------------------------------------------------------------
    def _audit(self, rows: list[dict]) -> int:
        result = self.tables.merge("lifecycle_actions", rows, keys=("action_id",), update=False)
        return int(result.get("num_target_rows_inserted", 0)) if rows else 0

    def _set_status(self, ids: list[str], status: str, deleted_at: datetime | None) -> None:
        now = datetime.now(UTC)
        self.tables.merge("assets", [{"id": i, "status": status, "deleted_at": deleted_at, "updated_at": now}
                                     for i in ids],
                          keys=("id",), columns=("status", "deleted_at", "updated_at"), insert=False)

    def _rows(self, action: str, ids: list[str], policy: str, partition: str, run_id: str, by: str,
              dry_run: bool, now: datetime, bytes_of=None) -> list[dict]:
        if not ids:
            return []
        versions = self._versions("a.id in (select unnest(?))", [ids])
        return [{"action_id": action_id(partition, action, policy, v["asset_id"], v["version"], dry_run),
                 "acted_at": now, "partition_key": partition, "policy": policy, "action": action,
                 "asset_id": v["asset_id"], "version": v["version"], "sha256": v["sha256"],
                 "bytes": bytes_of(v) if bytes_of else v["size_bytes"], "dry_run": dry_run, "run_id": run_id,
                 "by": by} for v in versions]

    # --- actions -----------------------------------------------------------------------------
    def apply(self, action: str, ids: list[str], *, policy: str = "api", partition: str | None = None,
              run_id: str = "api", by: str = "api", dry_run: bool = False) -> int:
        """archive | delete (soft) | restore | undelete for `ids`; audit rows first, then status."""
        now = datetime.now(UTC)
        partition = partition or now.isoformat()
        rows = self._rows(action, ids, policy, partition, run_id, by, dry_run, now)
        written = self._audit(rows)
        if dry_run or not ids:
            return written
        failpoint("lifecycle-status")
        status = {"archive": "archived", "delete": "deleted", "restore": "active", "undelete": "active"}[action]
        self._set_status(ids, status, now if action == "delete" else None)
        return written

    def archive(self, asset_id: str, by: str = "api") -> None:
        asset = self._asset(asset_id)
        if asset["status"] != "active":
            raise LifecycleError(f"asset {asset_id} is {asset['status']}; only active assets can be archived")
        self.apply("archive", [asset_id], by=by)
        self.reconcile_blobs()

    def restore(self, asset_id: str, by: str = "api") -> None:
        asset = self._asset(asset_id)
        if asset["status"] != "archived":
            raise LifecycleError(f"asset {asset_id} is {asset['status']}, not archived")
        # Bring the bytes back before the asset becomes active again.
        for v in self._versions("a.id = ?", [asset_id]):
            self._copy(v["sha256"], self.archive_store, self.hot_store)
        self.apply("restore", [asset_id], by=by)
        self.reconcile_blobs()

    def delete(self, asset_id: str, by: str = "api") -> None:
        asset = self._asset(asset_id)
        if asset["status"] == "deleted":
            return
        if asset["status"] == "archived":
            for v in self._versions("a.id = ?", [asset_id]):  # undeletable: keep the bytes hot
                self._copy(v["sha256"], self.archive_store, self.hot_store)
        self.apply("delete", [asset_id], by=by)

    def undelete(self, asset_id: str, grace_period_days: float, by: str = "api") -> None:
        asset = self._asset(asset_id)
        if asset["status"] != "deleted":
            raise LifecycleError(f"asset {asset_id} is {asset['status']}, not deleted")
        if asset_id in self.purged_ids():
            raise LifecycleError(f"asset {asset_id} was hard-deleted after its grace period; it cannot be undeleted")
        deadline = asset["deleted_at"] + timedelta(days=grace_period_days)
        if datetime.now(UTC) > deadline:
            raise LifecycleError(f"asset {asset_id}'s grace period ended at {deadline.isoformat()}; "
                                 "the next sweep hard-deletes it")
        self.apply("undelete", [asset_id], by=by)

    def hard_delete_expired(self, as_of: datetime, grace_period_days: float, partition: str, run_id: str,
                            dry_run: bool = False) -> tuple[int, int]:
        """Soft-deleted assets past the grace period: audit (bytes each version frees), then drop
        their embeddings; `reconcile_blobs` frees the blobs nobody else references."""
        cutoff = as_of - timedelta(days=grace_period_days)
        purged = self.purged_ids()
        expired = [r["id"] for r in self.tables.read(
            "assets", where="status = 'deleted' and deleted_at <= ?", params=[cutoff], columns=["id"]).to_pylist()
            if r["id"] not in purged]
        if not expired:
            return 0, 0
        still_needed = {v["sha256"] for v in self._versions(
            "a.status in ('active', 'archived') or (a.status = 'deleted' and a.id not in (select unnest(?)))",
            [sorted(purged | set(expired))])}
        freed: set[str] = set()

        def bytes_of(v: dict) -> int:
            if v["sha256"] in still_needed or v["sha256"] in freed:
                return 0
            freed.add(v["sha256"])
            return v["size_bytes"]

        rows = self._rows("hard_delete", expired, "grace_period", partition, run_id, "sweep", dry_run,
                          datetime.now(UTC), bytes_of)
        self._audit(rows)
        if not dry_run:
            self._drop_embeddings(expired)
        return len(expired), sum(r["bytes"] for r in rows)

    # --- data placement ----------------------------------------------------------------------
    def _copy(self, sha: str, src: ObjectStore, dst: ObjectStore) -> None:
        if dst.exists(sha):
            return
        if not src.exists(sha):
            raise ObjectMissing(f"blob {sha} is in neither object store")
        with src.open(sha) as f:
            stored, _, _ = dst.put_stream(f)
        if stored != sha:
            dst.delete(stored)
            raise ObjectMissing(f"blob {sha} read back with hash {stored}: not copied")
        dst.flush()

    def reconcile_blobs(self) -> list[dict]:
        """Make the stores match the statuses; returns audit rows of bytes moved and freed."""
        purged = self.purged_ids()
        versions = self._versions("true", [])
        hot_needed, archive_needed, referenced, sizes = set(), set(), set(), {}
        for v in versions:
            referenced.add(v["sha256"])
            sizes[v["sha256"]] = v["size_bytes"]
            if v["status"] == "archived":
                archive_needed.add(v["sha256"])
            elif v["status"] == "active" or (v["status"] == "deleted" and v["asset_id"] not in purged):
                hot_needed.add(v["sha256"])
        moves, problems = [], []
        now = datetime.now(UTC)
        # One listing per store instead of a lookup per blob (a million HEADs on S3 would not do).
        present = {id(self.hot_store): set(self.hot_store.iter_hashes()),
                   id(self.archive_store): set(self.archive_store.iter_hashes())}
        wanted = ((archive_needed, self.hot_store, self.archive_store, "blob_archived"),
                  (hot_needed, self.archive_store, self.hot_store, "blob_restored"))
        for needed, src, dst, kind in wanted:  # copy first...
            for sha in sorted(needed - present[id(dst)]):
                try:
                    self._copy(sha, src, dst)
                    present[id(dst)].add(sha)
                    moves.append((kind, sha))
                except ObjectMissing as exc:
                    problems.append(str(exc))
        failpoint("lifecycle-reconcile")
        unwanted = ((hot_needed, self.hot_store, archive_needed, self.archive_store, "blob_freed_hot"),
                    (archive_needed, self.archive_store, hot_needed, self.hot_store, "blob_freed_archive"))
        for needed, store, needed_elsewhere, elsewhere, kind in unwanted:  # ...then delete what no one needs
            for sha in sorted((referenced - needed) & present[id(store)]):
                if sha in needed_elsewhere and sha not in present[id(elsewhere)]:
                    continue  # its only copy
                if store.delete(sha):
                    present[id(store)].discard(sha)
                    moves.append((kind, sha))
        rows = [{"action_id": action_id(now.isoformat(), kind, sha), "acted_at": now,
                 "partition_key": now.date().isoformat(), "policy": "refcount", "action": kind, "asset_id": None,
                 "version": None, "sha256": sha, "bytes": sizes.get(sha, 0), "dry_run": False,
                 "run_id": "reconcile", "by": "sweep"}
                for kind, sha in moves]
        self._audit(rows)
        self.problems = problems
        return rows

    def _drop_embeddings(self, ids: list[str]) -> None:
        if self.vectors_dir is not None and Path(self.vectors_dir).exists():
            from asset_pipeline.embeddings.vectors import VectorStore

            VectorStore(Path(self.vectors_dir)).delete_assets(ids)

    def _asset(self, asset_id: str) -> dict:
        rows = self.tables.read("assets", where="id = ?", params=[asset_id]).to_pylist()
        if not rows:
            raise AssetNotFound(f"no asset with id {asset_id!r}")
        return rows[0]


def sweep(lifecycle: Lifecycle, policies: tuple[Policy, ...], grace_period_days: float, partition: str,
          run_id: str, dry_run: bool = False) -> SweepSummary:
    """One day's sweep. `as_of` is the end of the partition's day, so re-running a partition
    selects the same way; already-applied assets no longer match, so a re-run changes nothing."""
    as_of = datetime.fromisoformat(partition).replace(tzinfo=UTC) + timedelta(days=1)
    summary = SweepSummary(partition, dry_run)
    claimed: set[str] = set()
    for policy in policies:
        ids = [i for i in lifecycle.select(policy, as_of) if i not in claimed]
        claimed |= set(ids)  # the first policy that selects an asset acts on it
        summary.selected[policy.name] = len(ids)
        summary.audit_rows += lifecycle.apply(policy.action, ids, policy=policy.name, partition=partition,
                                              run_id=run_id, by="sweep", dry_run=dry_run)
        if not dry_run:
            if policy.action == "archive":
                summary.archived += len(ids)
            else:
                summary.deleted += len(ids)
    summary.hard_deleted, freed = lifecycle.hard_delete_expired(as_of, grace_period_days, partition, run_id, dry_run)
    if not dry_run:
        moves = lifecycle.reconcile_blobs()
        summary.problems = lifecycle.problems
        summary.bytes_moved = sum(r["bytes"] for r in moves if r["action"] == "blob_archived")
        summary.bytes_freed = sum(r["bytes"] for r in moves if r["action"].startswith("blob_freed"))
        summary.audit_rows += len(moves)
    else:
        summary.bytes_freed = freed
    return summary


def blob_report(lifecycle: Lifecycle) -> dict[str, list[str]]:
    """Orphans (stored blobs no version references) and versions of assets that are not
    hard-deleted whose blob is in neither store."""
    purged = lifecycle.purged_ids()
    versions = lifecycle._versions("true", [])
    referenced = {v["sha256"] for v in versions}
    live = {v["sha256"] for v in versions if v["asset_id"] not in purged}
    in_hot, in_archive = set(lifecycle.hot_store.iter_hashes()), set(lifecycle.archive_store.iter_hashes())
    return {"orphans": sorted((in_hot | in_archive) - referenced), "missing": sorted(live - in_hot - in_archive)}
