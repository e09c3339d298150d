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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute

from asset_pipeline.errors import AssetNotFound, LifecycleError, ObjectMissing
from asset_pipeline.failpoints import failpoint
from asset_pipeline.lifecycle.guard import check_mass_delete
from asset_pipeline.lifecycle.placement import Placement
from asset_pipeline.lifecycle.policies import GuardRails, Policy
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
    versions_purged: int = 0  # keep-last-N: versions whose bytes were released
    bytes_moved: int = 0
    bytes_freed: int = 0
    audit_rows: int = 0
    problems: list[str] = field(default_factory=list)
    previewed: list[str] = field(default_factory=list)  # new policies run as dry runs this time
    mass_delete: str | None = None  # what the guard says about this sweep's deletions (allowed or a dry run)


def action_id(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:32]


DEFAULT_BLOB_GRACE = timedelta(hours=24)
STATUS_AFTER = {"archive": "archived", "delete": "deleted", "restore": "active", "undelete": "active"}


class Lifecycle:
    """Status changes (audited) and the placement of blobs that follows them.

    `blob_grace`: how long a blob must stay unneeded before it is deleted — longer than any run
    lasts, so a run that read the catalog before the blob became unneeded has long finished."""

    def __init__(self, tables: Tables, hot: ObjectStore, archive: ObjectStore, vectors_dir=None,
                 blob_grace: timedelta = DEFAULT_BLOB_GRACE,
                 exclusive: Callable[[], AbstractContextManager] = nullcontext):
        self.tables, self.hot_store, self.archive_store, self.vectors_dir = tables, hot, archive, vectors_dir
        self.blob_grace = blob_grace
        self.exclusive = exclusive  # the home's lifecycle lock: one sweep or blob move at a time

    # --- reading state -----------------------------------------------------------------------
    def purged_ids(self) -> set[str]:
        return set(self.tables.read("lifecycle_actions", where="action = 'hard_delete' and not dry_run",
                                    columns=["asset_id"])["asset_id"].to_pylist())

    def policies_seen_before(self, partition: str, names: list[str], run_id: str) -> set[str]:
        """Those of `names` that an earlier run recorded audit rows for (a preview or real actions)
        in an earlier partition: a backfill's first day does not count as the preview of its next."""
        if not names:
            return set()
        return set(self.tables.read(
            "lifecycle_actions", where="policy in (select unnest(?)) and partition_key < ? and run_id <> ?",
            params=[names, partition, run_id], columns=["policy"])["policy"].to_pylist())

    def _versions(self, where: str, params: list) -> list[dict]:
        """Versions with their asset's status — or 'pruned' for a version whose bytes a
        keep-last-N policy released (its row stays; no store keeps its blob for it)."""
        con = connect(self.tables, ["assets", "asset_versions", "lifecycle_actions"])
        try:
            return con.sql(f"""select a.id as asset_id,
                                      case when p.version is null then a.status else 'pruned' end as status,
                                      a.deleted_at, v.version, v.sha256, v.size_bytes
                               from assets a join asset_versions v on v.asset_id = a.id
                               left join (select distinct asset_id, version from lifecycle_actions
                                          where action = 'version_purged' and not dry_run) p
                                 on p.asset_id = v.asset_id and p.version = v.version
                               where {where}
                               order by a.id, v.version""", params=params or None).to_arrow_table().to_pylist()
        finally:
            con.close()

    def select(self, policies: Sequence[Policy], as_of: datetime) -> list[list[str]]:
        """The ids each policy acts on, from one scan of `assets` (one column per policy's
        predicate): an asset belongs to the first policy that selects it, except that a
        prune_versions policy keeps the asset as it is, so it claims nothing and gets all it selects."""
        if not policies:
            return []
        clauses, params = zip(*(p.where(as_of) for p in policies))
        flags = ", ".join(f"coalesce(({c}), false) as p{i}" for i, c in enumerate(clauses))
        any_flag = " or ".join(f"p{i}" for i in range(len(policies)))
        con = connect(self.tables, ["assets"])
        try:
            got = con.execute(f"select * from (select id, {flags} from assets) where {any_flag}",
                              [x for p in params for x in p]).to_arrow_table()
        finally:
            con.close()
        claimed = pa.chunked_array([pa.repeat(False, got.num_rows)])
        selected = []
        for i, policy in enumerate(policies):
            mask = got[f"p{i}"]
            if policy.action != "prune_versions":
                mask = pa.compute.and_not(mask, claimed)
                claimed = pa.compute.or_(claimed, mask)
            selected.append(pa.compute.filter(got["id"], mask).to_pylist())
        return selected

    # --- recording ---------------------------------------------------------------------------
    def _audit(self, rows: list[dict] | pa.Table) -> int:
        if not len(rows):
            return 0
        result = self.tables.merge("lifecycle_actions", rows, keys=("action_id",), update=False)
        return int(result.get("num_target_rows_inserted", 0))

    def _set_status(self, ids: list[str], status: str, deleted_at: datetime | None) -> None:
        now = datetime.now(UTC)
        n = len(ids)
        ts = pa.timestamp("us", tz="UTC")
        self.tables.merge("assets", pa.table({
            "id": pa.array(ids, pa.string()), "status": pa.array([status] * n, pa.string()),
            "deleted_at": pa.array([deleted_at] * n, ts), "updated_at": pa.array([now] * n, ts)}),
            keys=("id",), columns=("status", "deleted_at", "updated_at"), insert=False)

    def _rows(self, selections: list[tuple[str, str, list[str]]], partition: str, run_id: str, by: str,
              dry_run: bool, now: datetime) -> pa.Table:
        """Audit rows, one per version of each selected asset, for several (action, policy, ids)
        at once, as an Arrow table built by DuckDB: at a sweep's scale (10^5 versions) Python
        dicts would cost more than the Delta commit."""
        chosen = [(action, policy, ids) for action, policy, ids in selections if ids]
        if not chosen:
            return pa.table({})
        con = connect(self.tables, ["asset_versions"])
        try:
            # The ids join as an Arrow table (a list parameter of 10^5 strings costs DuckDB seconds),
            # one per selection: no Python tuple per id.
            con.register("wanted", pa.concat_tables(pa.table({
                "id": pa.array(ids, pa.string()), "action": pa.repeat(action, len(ids)),
                "policy": pa.repeat(policy, len(ids))}) for action, policy, ids in chosen))
            con.execute("""create temp table picked as
                           select v.asset_id, v.version, v.sha256, v.size_bytes as bytes, w.action, w.policy
                           from asset_versions v join wanted w on w.id = v.asset_id""")
            return self._audit_table(con, "picked", partition, run_id, by, dry_run, now)
        finally:
            con.close()

    @staticmethod
    def _audit_table(con: Any, versions: str, partition: str, run_id: str, by: str, dry_run: bool,
                     now: datetime) -> pa.Table:
        """`lifecycle_actions` rows for the relation `versions` (asset_id, version, sha256, bytes,
        action, policy) of `con`; ids are `action_id(partition, action, policy, asset_id, version,
        dry_run)`, computed by DuckDB (the same sha256 of the same text)."""
        return con.execute(f"""
            select substr(sha256(concat($partition, chr(0), action, chr(0), policy, chr(0), asset_id, chr(0),
                                        version::varchar, chr(0), $dry_text)), 1, 32) as action_id,
                   $now::timestamptz as acted_at, $partition as partition_key, policy, action,
                   asset_id, version, sha256, bytes::bigint as bytes, $dry_run as dry_run, $run_id as run_id,
                   $by as by
            from {versions}""", {"partition": partition, "dry_text": str(dry_run), "now": now, "dry_run": dry_run,
                                 "run_id": run_id, "by": by}).to_arrow_table()

    # --- actions -----------------------------------------------------------------------------
    def apply(self, action: str, ids: list[str], *, policy: str = "api", partition: str | None = None,
              run_id: str = "api", by: str = "api", dry_run: bool = False) -> int:
        """archive | delete (soft) | restore | undelete for `ids`; audit rows first, then status."""
        return self.apply_many([(action, policy, ids)], partition=partition, run_id=run_id, by=by, dry_run=dry_run)

    def apply_many(self, selections: list[tuple[str, str, list[str]]], *, partition: str | None = None,
                   run_id: str = "api", by: str = "api", dry_run: bool = False) -> int:
        """Several (action, policy, ids) at once — a sweep's policies: one audit merge for all,
        then one status merge per status (each merge rewrites the files of `assets` it touches,
        so three policies cost one rewrite, not three). Returns audit rows written."""
        now = datetime.now(UTC)
        partition = partition or now.isoformat()
        written = self._audit(self._rows(selections, partition, run_id, by, dry_run, now))
        if dry_run:
            return written
        failpoint("lifecycle-status")
        by_status: dict[str, list[str]] = {}
        for action, _, ids in selections:
            by_status.setdefault(STATUS_AFTER[action], []).extend(ids)
        for status, ids in by_status.items():
            if ids:
                self._set_status(ids, status, now if status == "deleted" else None)
        return written

    # One asset at a time, as a user asks. Each checks the asset's status and acts under the home's
    # lifecycle lock, which a sweep and a recall hold while they work: a check made before the lock
    # could be stale by the time the status is written (a delete undone by a sweep's archive, an
    # undelete writing 'active' over an asset the sweep just hard-deleted, its bytes freed).
    def archive(self, asset_id: str, by: str = "api") -> None:
        with self.exclusive():
            asset = self._asset(asset_id)
            if asset["status"] != "active":
                raise LifecycleError(f"asset {asset_id} is {asset['status']}; only active assets can be archived")
            self.apply("archive", [asset_id], by=by)
            self.reconcile_blobs(only=self._blobs_of(asset_id))

    def restore(self, asset_id: str, by: str = "api") -> None:
        with self.exclusive():
            asset = self._asset(asset_id)
            if asset["status"] != "archived":
                raise LifecycleError(f"asset {asset_id} is {asset['status']}, not archived")
            # Bring the bytes back before the asset becomes active again.
            for v in self._versions("a.id = ?", [asset_id]):
                if v["status"] != "pruned":
                    self._copy(v["sha256"], self.archive_store, self.hot_store)
            self.apply("restore", [asset_id], by=by)
            self.reconcile_blobs(only=self._blobs_of(asset_id))

    def delete(self, asset_id: str, by: str = "api") -> None:
        with self.exclusive():
            asset = self._asset(asset_id)
            if asset["status"] == "deleted":
                return
            if asset["status"] == "archived":
                for v in self._versions("a.id = ?", [asset_id]):  # undeletable: keep the bytes hot
                    if v["status"] != "pruned":
                        self._copy(v["sha256"], self.archive_store, self.hot_store)
            self.apply("delete", [asset_id], by=by)

    def undelete(self, asset_id: str, grace_period_days: float, by: str = "api") -> None:
        with self.exclusive():
            asset = self._asset(asset_id)
            if asset["status"] != "deleted":
                raise LifecycleError(f"asset {asset_id} is {asset['status']}, not deleted")
            purged = hard_delete_record(self.tables, asset_id)
            if purged is not None:
                raise LifecycleError(f"asset {asset_id} was hard-deleted on {purged['acted_at']:%Y-%m-%d %H:%M} UTC "
                                     f"(retention sweep {purged['partition_key']}) after its grace period; its "
                                     "content is gone and it cannot be undeleted")
            deadline = asset["deleted_at"] + timedelta(days=grace_period_days)
            if datetime.now(UTC) > deadline:
                raise LifecycleError(f"asset {asset_id}'s grace period ended at {deadline.isoformat()}; "
                                     "the next sweep hard-deletes it")
            self.apply("undelete", [asset_id], by=by)

    def hard_delete_expired(self, as_of: datetime, grace_period_days: float, partition: str, run_id: str,
                            dry_run: bool = False) -> tuple[int, int]:
        """Soft-deleted assets past the grace period: audit (bytes each version frees), then drop
        their embeddings; `reconcile_blobs` frees the blobs nobody else references.

        One DuckDB query decides what each expiring version frees: its blob's size if no version
        of a live, archived or still-undeletable asset (nor a pruned one's) keeps it, counted
        once per blob (for the first expiring version that holds it)."""
        cutoff = as_of - timedelta(days=grace_period_days)
        con = connect(self.tables, ["assets", "asset_versions", "lifecycle_actions"])
        try:
            con.execute("""create temp table purged as select distinct asset_id as id from lifecycle_actions
                           where action = 'hard_delete' and not dry_run""")
            con.execute("""create temp table expired as select id from assets
                           where status = 'deleted' and deleted_at <= ? and id not in (select id from purged)""",
                        [cutoff])
            expired = [r[0] for r in con.sql("select id from expired order by id").fetchall()]
            if not expired:
                return 0, 0
            con.execute("""create temp table going as select v.asset_id, v.version, v.sha256, v.size_bytes
                           from asset_versions v semi join expired e on e.id = v.asset_id""")
            # Versions of other assets that share a going blob (a few: found before `assets` is
            # joined, so the join builds on them, not on a million assets), and which still need it.
            con.execute("""create temp table sharing as
                           select v.asset_id, v.version, v.sha256 from asset_versions v
                           semi join going g on g.sha256 = v.sha256
                           where v.asset_id not in (select id from expired)
                             and v.asset_id not in (select id from purged)""")
            con.execute("""create temp table needed as
                           select distinct v.sha256 from sharing v
                           join assets a on a.id = v.asset_id
                           where a.status in ('active', 'archived', 'deleted')
                             and not exists (select 1 from lifecycle_actions p
                                             where p.action = 'version_purged' and not p.dry_run
                                               and p.asset_id = v.asset_id and p.version = v.version)""")
            con.execute("""create temp table freeing as
                           select g.asset_id, g.version, g.sha256, 'hard_delete' as action, 'grace_period' as policy,
                                  case when g.sha256 in (select sha256 from needed)
                                         or row_number() over (partition by g.sha256 order by g.asset_id, g.version) > 1
                                       then 0 else g.size_bytes end as bytes
                           from going g""")
            rows = self._audit_table(con, "freeing", partition, run_id, "sweep", dry_run, datetime.now(UTC))
        finally:
            con.close()
        self._audit(rows)
        if not dry_run:
            self._drop_embeddings(expired)
        return len(expired), int(pa.compute.sum(rows["bytes"]).as_py() or 0)

    def expired_ids(self, as_of: datetime, grace_period_days: float) -> list[str]:
        """Soft-deleted assets whose grace period ended by `as_of` and that are not purged yet
        (one anti-join in DuckDB: every asset ever purged never becomes a Python string)."""
        cutoff = as_of - timedelta(days=grace_period_days)
        con = connect(self.tables, ["assets", "lifecycle_actions"])
        try:
            return [r[0] for r in con.execute(
                """select id from assets where status = 'deleted' and deleted_at <= ? and id not in (
                       select asset_id from lifecycle_actions where action = 'hard_delete' and not dry_run
                       and asset_id is not null)""", [cutoff]).fetchall()]
        finally:
            con.close()

    # --- keep the last N versions (issue 14) --------------------------------------------------
    def prune_versions(self, ids: list[str], keep: int, policy: str, partition: str, run_id: str,
                       dry_run: bool = False) -> int:
        """Mark the versions of `ids` older than their newest `keep` (audit `prune_version`); their
        bytes go only after the grace period (`purge_pruned_versions`). Returns versions marked."""
        if not ids:
            return 0
        con = connect(self.tables, ["asset_versions", "lifecycle_actions"])
        try:
            rows = con.execute("""
                select v.asset_id, v.version, v.sha256, v.size_bytes from asset_versions v
                join (select asset_id, max(version) latest from asset_versions
                      where asset_id in (select unnest($ids)) group by 1) m on m.asset_id = v.asset_id
                where v.version <= m.latest - $keep and not exists (
                    select 1 from lifecycle_actions l where l.action = 'prune_version' and not l.dry_run
                    and l.asset_id = v.asset_id and l.version = v.version)
                order by 1, 2""", {"ids": ids, "keep": keep}).fetchall()
        finally:
            con.close()
        now = datetime.now(UTC)
        self._audit([{"action_id": action_id(partition, "prune_version", policy, a, v, dry_run), "acted_at": now,
                      "partition_key": partition, "policy": policy, "action": "prune_version", "asset_id": a,
                      "version": v, "sha256": sha, "bytes": size, "dry_run": dry_run, "run_id": run_id,
                      "by": "sweep"} for a, v, sha, size in rows])
        return len(rows)

    def purge_pruned_versions(self, as_of: datetime, grace_period_days: float, partition: str, run_id: str,
                              dry_run: bool = False) -> tuple[int, int]:
        """Versions pruned at least the grace period ago lose their bytes (audit `version_purged`,
        bytes it frees: 0 while another live version shares the blob); `reconcile_blobs` deletes."""
        cutoff = as_of - timedelta(days=grace_period_days)
        con = connect(self.tables, ["lifecycle_actions"])
        try:
            due = con.execute("""
                select distinct p.asset_id, p.version, p.sha256 from lifecycle_actions p
                where p.action = 'prune_version' and not p.dry_run and p.acted_at <= ? and not exists (
                    select 1 from lifecycle_actions q where q.action = 'version_purged' and not q.dry_run
                    and q.asset_id = p.asset_id and q.version = p.version) order by 1, 2""", [cutoff]).fetchall()
        finally:
            con.close()
        if not due:
            return 0, 0
        going = {(a, v) for a, v, _ in due}
        purged = self.purged_ids()
        # Only the versions that share a due blob decide whether it is freed (not every version).
        keep = {v["sha256"] for v in self._versions("v.sha256 in (select unnest(?))", [sorted({s for _, _, s in due})])
                if (v["asset_id"], v["version"]) not in going and v["status"] != "pruned"
                and v["asset_id"] not in purged}
        sizes = {v["sha256"]: v["size_bytes"] for v in self._versions("a.id in (select unnest(?))",
                                                                      [sorted({a for a, _, _ in due})])}
        freed: set[str] = set()
        rows, now = [], datetime.now(UTC)
        for a, v, sha in due:
            frees = sha not in keep and sha not in freed
            freed |= {sha} if frees else set()
            rows.append({"action_id": action_id(partition, "version_purged", a, v, dry_run), "acted_at": now,
                         "partition_key": partition, "policy": "grace_period", "action": "version_purged",
                         "asset_id": a, "version": v, "sha256": sha, "bytes": sizes.get(sha, 0) if frees else 0,
                         "dry_run": dry_run, "run_id": run_id, "by": "sweep"})
        self._audit(rows)
        return len(rows), sum(r["bytes"] for r in rows)

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

    def _blobs_of(self, asset_id: str) -> set[str]:
        return {v["sha256"] for v in self._versions("a.id = ?", [asset_id])}

    def _placement(self, only: set[str] | None = None) -> Placement:
        """Per referenced hash (or just those of `only`), from the tables as they are now: its
        size and whether the hot store and the archive must hold it (see `Placement`)."""
        return Placement.read(self.tables, only)

    def _marked_long_enough(self, candidates: dict[str, set[str]], now: datetime, run_id: str,
                            only: set[str] | None = None) -> dict[str, set[str]]:
        """Mark phase: record when each store's copy of a hash was first seen unneeded, forget
        marks whose hash is needed again, and return what has stayed unneeded for `blob_grace`.
        With `only`, marks of other hashes are left alone."""
        marks = self.tables.read("blob_marks").to_pylist() if only is None else self.tables.read(
            "blob_marks", where="sha256 in (select unnest(?))", params=[sorted(only)]).to_pylist()
        have = {(m["store"], m["sha256"]): m["marked_at"] for m in marks}
        fresh = [{"sha256": sha, "store": store, "marked_at": now, "run_id": run_id}
                 for store, shas in candidates.items() for sha in sorted(shas) if (store, sha) not in have]
        stale = [m for m in marks if m["sha256"] not in candidates.get(m["store"], set())]
        if fresh:
            self.tables.merge("blob_marks", fresh, keys=("store", "sha256"), update=False)
        if stale:
            self.tables.delete_matching("blob_marks", stale, keys=("store", "sha256"))
        since = {**have, **{(f["store"], f["sha256"]): now for f in fresh}}
        cutoff = now - self.blob_grace
        return {store: {sha for sha in shas if since[(store, sha)] <= cutoff} for store, shas in candidates.items()}

    def reconcile_blobs(self, run_id: str = "reconcile", only: set[str] | None = None) -> list[dict]:
        """Make the stores match the statuses; returns audit rows of bytes moved and freed.

        Copies are made first. A copy nobody needs is then only marked; once it has stayed
        unneeded for `blob_grace`, it is hidden, the references are read again, and it is purged
        — or unhidden if a concurrent writer (an ingest that deduplicated against it, a restore)
        referenced it meanwhile. Together with the writers' check after their commit this keeps
        every committed version's blob, whatever runs beside the sweep.

        With `only` (an archive or restore of one asset), just those hashes are reconciled: they
        are looked up one by one instead of listing both stores and reading every version."""
        placement = self._placement(only)
        stores = {"hot": self.hot_store, "archive": self.archive_store}
        moves, problems = [], []
        # One listing per store instead of a lookup per blob (a million HEADs on S3 would not do);
        # a handful of hashes are looked up directly.
        present = {name: set(store.iter_hashes()) if only is None else {sha for sha in only if store.exists(sha)}
                   for name, store in stores.items()}
        # Only the hashes whose copies differ from what the statuses ask for come back as rows.
        odd = placement.mismatches({name: pa.array(list(shas), pa.string()) for name, shas in present.items()})
        for dst, src in (("archive", "hot"), ("hot", "archive")):  # copy first...
            for row in odd:
                if row[f"in_{dst}"] and not row[f"has_{dst}"]:
                    try:
                        self._copy(row["sha256"], stores[src], stores[dst])
                        row[f"has_{dst}"] = True
                        moves.append(("blob_archived" if dst == "archive" else "blob_restored", row["sha256"]))
                    except ObjectMissing as exc:
                        problems.append(str(exc))
        failpoint("lifecycle-reconcile")
        # ...then collect what no one needs: never a blob's only copy, never an unreferenced blob
        # (it may belong to an ingest that has not committed yet).
        candidates = {name: {r["sha256"] for r in odd if r[f"has_{name}"] and not r[f"in_{name}"]
                             and not (r[f"in_{other}"] and not r[f"has_{other}"])}
                      for name, other in (("hot", "archive"), ("archive", "hot"))}
        now = datetime.now(UTC)
        eligible = self._marked_long_enough(candidates, now, run_id, only)
        hidden = {name: {sha for sha in sorted(eligible[name]) if stores[name].hide(sha)}
                  | {sha for sha in stores[name].hidden_hashes() if only is None or sha in only}
                  for name in stores}  # plus a crashed sweep's
        failpoint("gc-hidden")
        recheck = None
        if any(hidden.values()):
            # The references of the hidden hashes as they are now (every version sharing one counts).
            recheck = self._placement(set().union(*hidden.values()))
            settled = []
            for name, shas in hidden.items():
                needed = recheck.needs(name, shas)
                for sha in sorted(shas):
                    if sha in needed:
                        stores[name].unhide(sha)
                    elif stores[name].purge_hidden(sha):
                        moves.append((f"blob_freed_{name}", sha))
                    settled.append({"store": name, "sha256": sha})
            self.tables.delete_matching("blob_marks", settled, keys=("store", "sha256"))
        moved = {sha for _, sha in moves}
        size = {**(recheck.sizes(moved) if recheck is not None else {}), **placement.sizes(moved)}
        rows = [{"action_id": action_id(now.isoformat(), kind, sha), "acted_at": now,
                 "partition_key": now.date().isoformat(), "policy": "refcount", "action": kind, "asset_id": None,
                 "version": None, "sha256": sha, "bytes": size.get(sha, 0), "dry_run": False,
                 "run_id": run_id, "by": "sweep"}
                for kind, sha in moves]
        self._audit(rows)
        self.problems = problems
        return rows

    def _drop_embeddings(self, ids: list[str]) -> None:
        if self.vectors_dir is not None:
            from asset_pipeline.embeddings.vectors import VectorStore

            VectorStore(self.vectors_dir).delete_assets(ids)

    def _asset(self, asset_id: str) -> dict:
        rows = self.tables.read("assets", where="id = ?", params=[asset_id]).to_pylist()
        if not rows:
            raise AssetNotFound(f"no asset with id {asset_id!r}")
        return rows[0]


@dataclass
class SweepPlan:
    """What one day's sweep would do, decided before anything changes."""

    partition: str
    as_of: datetime
    steps: list[tuple[Policy, list[str], bool]]  # (policy, selected ids, as a dry run)
    expired: list[str]                           # soft-deleted assets past their grace period
    previewed: list[str]

    def deleting(self, acting_only: bool = True) -> dict[str, list[str]]:
        return {p.name: ids for p, ids, dry in self.steps if p.action == "delete" and not (acting_only and dry)}


def plan_sweep(lifecycle: Lifecycle, policies: tuple[Policy, ...], grace_period_days: float, partition: str,
               run_id: str, dry_run: bool = False, rails: GuardRails = GuardRails()) -> SweepPlan:
    """Select for every policy (the first that selects an asset acts on it) and decide previews:
    a policy acts only once an earlier run recorded rows for it in an earlier partition."""
    as_of = datetime.fromisoformat(partition).replace(tzinfo=UTC) + timedelta(days=1)
    seen = lifecycle.policies_seen_before(partition, [p.name for p in policies], run_id) \
        if rails.preview_new_policies and not dry_run else None
    steps: list[tuple[Policy, list[str], bool]] = []
    previewed: list[str] = []
    for policy, ids in zip(policies, lifecycle.select(policies, as_of)):
        preview = seen is not None and policy.name not in seen
        if preview:
            previewed.append(policy.name)
        steps.append((policy, ids, dry_run or preview))
    return SweepPlan(partition, as_of, steps, lifecycle.expired_ids(as_of, grace_period_days), previewed)


def check_run(lifecycle: Lifecycle, policies: tuple[Policy, ...], grace_period_days: float, days: list[str],
              run_id: str, rails: GuardRails = GuardRails()) -> str | None:
    """The mass-delete guard over a whole run (a backfill sweeps many days): every day is planned
    before any changes, and the union of their deletions is checked at once, so a backfill cannot
    delete a share day by day. Raises MassDeleteRefused; returns the guard's note when allowed."""
    plans = [plan_sweep(lifecycle, policies, grace_period_days, day, run_id, False, rails) for day in days]
    by_policy: dict[str, list[str]] = {}
    for plan in plans:
        for name, ids in plan.deleting().items():
            by_policy.setdefault(name, []).extend(ids)
    taken: set[str] = set()
    by_policy = {name: [i for i in ids if not (i in taken or taken.add(i))] for name, ids in by_policy.items()}
    expired = sorted({i for plan in plans for i in plan.expired} - taken)
    label = days[0] if len(days) == 1 else f"{days[0]}…{days[-1]}"
    return check_mass_delete(lifecycle.tables, by_policy, expired, rails, label)


def sweep(lifecycle: Lifecycle, policies: tuple[Policy, ...], grace_period_days: float, partition: str,
          run_id: str, dry_run: bool = False, rails: GuardRails = GuardRails()) -> SweepSummary:
    """One day's sweep. `as_of` is the end of the partition's day, so re-running a partition
    selects the same way; already-applied assets no longer match, so a re-run changes nothing.

    Everything is planned first, then the guard rails decide (see `lifecycle.policies`): a new
    policy runs as a dry run (its preview), and deletions above the allowed share raise
    MassDeleteRefused before anything is changed. A dry run never fails; it notes what a real
    run would meet."""
    plan = plan_sweep(lifecycle, policies, grace_period_days, partition, run_id, dry_run, rails)
    summary = SweepSummary(partition, dry_run, previewed=plan.previewed)
    summary.selected = {p.name: len(ids) for p, ids, _ in plan.steps}
    summary.mass_delete = check_mass_delete(
        lifecycle.tables, plan.deleting(acting_only=not dry_run), plan.expired,
        GuardRails(rails.max_delete_share, True) if dry_run else rails, partition)
    selections: dict[bool, list[tuple[str, str, list[str]]]] = {False: [], True: []}
    for policy, ids, dry in plan.steps:
        if policy.action == "prune_versions":
            summary.audit_rows += lifecycle.prune_versions(ids, policy.keep_last_versions or 1, policy.name,
                                                           partition, run_id, dry)
            continue
        selections[dry].append((policy.action, policy.name, ids))
        if not dry:
            if policy.action == "archive":
                summary.archived += len(ids)
            else:
                summary.deleted += len(ids)
    # Every acting policy's audit rows in one commit, then one status merge per status (and the
    # previews' audit rows in one more).
    for dry, chosen in selections.items():
        if chosen:
            summary.audit_rows += lifecycle.apply_many(chosen, partition=partition, run_id=run_id, by="sweep",
                                                       dry_run=dry)
    summary.hard_deleted, freed = lifecycle.hard_delete_expired(plan.as_of, grace_period_days, partition, run_id,
                                                                dry_run)
    summary.versions_purged, freed_by_pruning = lifecycle.purge_pruned_versions(plan.as_of, grace_period_days,
                                                                                partition, run_id, dry_run)
    freed += freed_by_pruning
    if not dry_run:
        moves = lifecycle.reconcile_blobs(run_id)
        summary.problems = lifecycle.problems
        summary.bytes_moved = sum(r["bytes"] for r in moves if r["action"] == "blob_archived")
        summary.bytes_freed = sum(r["bytes"] for r in moves if r["action"].startswith("blob_freed"))
        summary.audit_rows += len(moves)
    else:
        summary.bytes_freed = freed
    return summary


def hard_delete_record(tables: Tables, asset_id: str) -> dict | None:
    """When and by which sweep the asset was hard-deleted (None: it was not)."""
    rows = tables.read("lifecycle_actions", where="asset_id = ? and action = 'hard_delete' and not dry_run",
                       params=[asset_id], columns=["acted_at", "partition_key"]).to_pylist()
    return min(rows, key=lambda r: r["acted_at"]) if rows else None


def blob_report(lifecycle: Lifecycle) -> dict[str, list[str]]:
    """Orphans (stored blobs no version references, older than the grace window — younger ones
    may belong to an ingest that has not committed yet) and versions of assets that are not
    hard-deleted whose blob is in neither store."""
    in_hot, in_archive = set(lifecycle.hot_store.iter_hashes()), set(lifecycle.archive_store.iter_hashes())
    purged = lifecycle.purged_ids()
    versions = lifecycle._versions("true", [])
    referenced = {v["sha256"] for v in versions}
    live = {v["sha256"] for v in versions if v["asset_id"] not in purged and v["status"] != "pruned"}
    cutoff = (datetime.now(UTC) - lifecycle.blob_grace).timestamp()
    orphans = [sha for store, shas in ((lifecycle.hot_store, in_hot), (lifecycle.archive_store, in_archive))
               for sha in shas - referenced if (store.modified_at(sha) or cutoff) <= cutoff]
    return {"orphans": sorted(set(orphans)), "missing": sorted(live - in_hot - in_archive)}
