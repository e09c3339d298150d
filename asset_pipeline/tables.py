"""The Delta tables that hold metadata, versions and rejected inputs.

Writes are batched by the callers (one commit per table per run) and retried on Delta's
optimistic-concurrency conflicts, so two ingests at once never lose rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from asset_pipeline.errors import CommitConflict
from asset_pipeline.failpoints import failpoint
from asset_pipeline.location import Location
from asset_pipeline.sql_literals import literal_list, split_list, string_literal, writable

TS = pa.timestamp("us", tz="UTC")
T = TypeVar("T")

ASSETS = pa.schema([
    ("id", pa.string()), ("name", pa.string()), ("project", pa.string()),
    ("type", pa.string()), ("format", pa.string()), ("size_bytes", pa.int64()),
    ("width", pa.int32()), ("height", pa.int32()), ("duration_s", pa.float64()),
    ("created_at", TS), ("created_by", pa.string()),
    ("model", pa.string()), ("prompt", pa.string()), ("seed", pa.int64()),
    ("parameters", pa.string()), ("tags", pa.list_(pa.string())), ("extra", pa.string()),
    ("status", pa.string()), ("deleted_at", TS),
    ("current_version", pa.int32()), ("current_sha256", pa.string()),
    ("download_count", pa.int64()), ("last_accessed", TS),
    ("ingested_at", TS), ("updated_at", TS),
])

ASSET_VERSIONS = pa.schema([
    ("asset_id", pa.string()), ("version", pa.int32()), ("sha256", pa.string()),
    ("size_bytes", pa.int64()), ("type", pa.string()), ("format", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("duration_s", pa.float64()),
    ("created_at", TS), ("created_by", pa.string()),
    ("model", pa.string()), ("prompt", pa.string()), ("seed", pa.int64()),
    ("parameters", pa.string()), ("tags", pa.list_(pa.string())), ("extra", pa.string()),
    ("change_description", pa.string()), ("previous_sha256", pa.string()),
    ("source_path", pa.string()), ("run_id", pa.string()), ("recorded_at", TS),
    # Provenance (issue 14); homes made before these existed gain them on first write (ADDED_COLUMNS).
    ("phash", pa.int64()), ("metadata_sources", pa.string()), ("digital_source_type", pa.string()),
    ("c2pa_state", pa.string()), ("c2pa_summary", pa.string()), ("adapters", pa.list_(pa.string())),
    ("inputs", pa.list_(pa.string())),
])

INGEST_ERRORS = pa.schema([
    ("error_id", pa.string()), ("source_path", pa.string()), ("sidecar_path", pa.string()),
    ("reason", pa.string()), ("field", pa.string()), ("size_bytes", pa.int64()),
    ("sha256", pa.string()), ("quarantine_path", pa.string()), ("run_id", pa.string()),
    ("recorded_at", TS),
])

NEAR_DUPLICATES = pa.schema([
    ("asset_a", pa.string()), ("version_a", pa.int32()), ("asset_b", pa.string()), ("version_b", pa.int32()),
    ("similarity", pa.float64()), ("model_id", pa.string()), ("computed_at", TS),
])

USAGE_EVENTS = pa.schema([
    ("event_id", pa.string()), ("asset_id", pa.string()), ("version", pa.int32()), ("action", pa.string()),
    ("user_id", pa.string()), ("context", pa.string()), ("collection_id", pa.string()), ("at", TS),
    ("day", pa.date32()), ("source", pa.string()), ("recorded_at", TS),
])

USAGE_ERRORS = pa.schema([
    ("error_id", pa.string()), ("source", pa.string()), ("line", pa.int64()), ("field", pa.string()),
    ("reason", pa.string()), ("raw", pa.string()), ("recorded_at", TS),
])

COLLECTIONS = pa.schema([
    ("id", pa.string()), ("name", pa.string()), ("description", pa.string()), ("owner", pa.string()),
    ("created_at", TS),
])

COLLECTION_ASSETS = pa.schema([
    ("collection_id", pa.string()), ("asset_id", pa.string()), ("added_by", pa.string()), ("added_at", TS),
])

COLLECTION_SHARES = pa.schema([
    ("collection_id", pa.string()), ("user_id", pa.string()), ("permission", pa.string()),
    ("granted_by", pa.string()), ("granted_at", TS),
])

COLLECTION_STATS = pa.schema([
    ("collection_id", pa.string()), ("name", pa.string()), ("owner", pa.string()), ("assets", pa.int64()),
    ("live_assets", pa.int64()), ("bytes", pa.int64()), ("shares", pa.int64()), ("computed_at", TS),
])

LIFECYCLE_ACTIONS = pa.schema([
    ("action_id", pa.string()), ("acted_at", TS), ("partition_key", pa.string()), ("policy", pa.string()),
    ("action", pa.string()), ("asset_id", pa.string()), ("version", pa.int32()), ("sha256", pa.string()),
    ("bytes", pa.int64()), ("dry_run", pa.bool_()), ("run_id", pa.string()), ("by", pa.string()),
])

# Provenance tables (issue 14): derived model rows, and one row per recall request.
MODELS = pa.schema([
    ("name", pa.string()), ("kind", pa.string()), ("assets", pa.int64()), ("live_assets", pa.int64()),
    ("versions", pa.int64()), ("bytes", pa.int64()), ("first_seen", TS), ("last_seen", TS), ("computed_at", TS),
])

RECALLS = pa.schema([
    ("recall_id", pa.string()), ("model", pa.string()), ("reason", pa.string()), ("by", pa.string()),
    ("dry_run", pa.bool_()), ("assets", pa.int64()), ("asset_ids", pa.list_(pa.string())), ("bytes", pa.int64()),
    ("requested_at", TS), ("run_id", pa.string()),
])

# Blobs copied to the local store's replica (ASSET_PIPELINE_REPLICA), so a crash resumes.
REPLICA_LOG = pa.schema([("sha256", pa.string()), ("replicated_at", TS)])

# Hash copies a sweep found unneeded, and since when (mark, then delete after the grace window).
BLOB_MARKS = pa.schema([
    ("sha256", pa.string()), ("store", pa.string()), ("marked_at", TS), ("run_id", pa.string()),
])

SCHEMAS: dict[str, pa.Schema] = {
    "assets": ASSETS,
    "asset_versions": ASSET_VERSIONS,
    "ingest_errors": INGEST_ERRORS,
    "near_duplicates": NEAR_DUPLICATES,
    "usage_events": USAGE_EVENTS,
    "usage_errors": USAGE_ERRORS,
    "collections": COLLECTIONS,
    "collection_assets": COLLECTION_ASSETS,
    "collection_shares": COLLECTION_SHARES,
    "collection_stats": COLLECTION_STATS,
    "lifecycle_actions": LIFECYCLE_ACTIONS,
    "blob_marks": BLOB_MARKS,
    "replica_log": REPLICA_LOG,
    "models": MODELS,
    "recalls": RECALLS,
}

# Columns added after a table was first released: an older home's table gains them when it is
# ensured before a write (`Tables.ensure`), and reads fill them with NULL where old files lack them.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "asset_versions": ("phash", "metadata_sources", "digital_source_type", "c2pa_state", "c2pa_summary",
                       "adapters", "inputs"),
}

# Delta partition columns: a daily report reads one day's files, not all of them.
PARTITIONS: dict[str, list[str]] = {"usage_events": ["day"]}

COMMIT_RETRIES = 12
# Values a keyed read writes into its query as literals; past this it binds them (see read_keyed).
LITERAL_LIST_MAX = 2_000

# Rows per Parquet row group. DuckDB reads a file's row groups in parallel, one per thread, and the
# joins and aggregations above the scan run on the threads that scan: with deltalake's default (one
# group of up to 1M rows per file) every query over a 1M-row table ran on one thread.
ROW_GROUP_ROWS = 131_072


def writer_properties() -> WriterProperties:
    """What every write of these tables (appends, merges, overwrites, compaction) uses."""
    return WriterProperties(max_row_group_size=ROW_GROUP_ROWS)


def _transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return isinstance(exc, CommitFailedError) or "conflict" in text or "concurrent" in text \
        or "version already exists" in text


def with_commit_retries(fn: Callable[[], T], retries: int = COMMIT_RETRIES, what: str = "commit") -> T:
    """Run `fn` again when another writer committed first; `fn` must re-read what it depends on.
    Backoff is exponential with jitter (capped at 2 s), so three writers on two cores settle in
    a few rounds. Raises CommitConflict once the retries are spent: a lost race is a failure the
    caller must see, never a silent no-op."""
    for attempt in range(retries):
        try:
            return fn()
        except (CommitFailedError, DeltaError) as exc:
            if not _transient(exc):
                raise
            if attempt == retries - 1:
                raise CommitConflict(f"{what}: still conflicting with concurrent writers after {retries} "
                                     f"attempts; nothing of it was written, re-run to try again ({exc})") from exc
            time.sleep(min(2.0, 0.05 * (2**attempt)) * (1 + random.random()))
    raise AssertionError("unreachable")


class Tables:
    """The Delta tables under one root (``<home>/tables``, a local folder or an S3 prefix)."""

    def __init__(self, root: Location | str | Path, commit_retries: int = COMMIT_RETRIES):
        self.root = root if isinstance(root, Location) else Location.parse(root)
        self.storage_options = self.root.s3.delta_options() if self.root.is_s3 else None
        self.commit_retries = commit_retries
        self._current: set[str] = set()  # tables known to have every column of their schema

    def uri(self, name: str) -> str:
        if name not in SCHEMAS:
            raise KeyError(f"unknown table {name!r}; known: {sorted(SCHEMAS)}")
        return (self.root / name).uri

    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(name), storage_options=self.storage_options)

    def open(self, name: str) -> DeltaTable | None:
        return self._table(name) if self.exists(name) else None

    def _table(self, name: str) -> DeltaTable:
        return DeltaTable(self.uri(name), storage_options=self.storage_options)

    def configure_duckdb(self, con: duckdb.DuckDBPyConnection) -> None:
        """Let `con` read this root's Parquet files (httpfs and a secret for an S3 root)."""
        if self.root.is_s3:
            from asset_pipeline.usage.reports import load_extension

            load_extension(con, "httpfs")
            con.execute(self.root.s3.duckdb_secret_sql())

    def files(self, name: str) -> list[str]:
        """Parquet files of the current snapshot, from the Delta log."""
        dt = self.open(name)
        if dt is None:
            return []
        return [u if u.startswith("s3://") else unquote(u.removeprefix("file://")) for u in dt.file_uris()]

    def scan_sql(self, name: str, files: list[str] | None = None) -> str:
        """A DuckDB table expression for the current snapshot.

        DuckDB reads the Parquet files named by the Delta log directly. (deltalake's own
        ``to_pyarrow_dataset`` is avoided: in deltalake 1.6 it aborts the interpreter at exit now
        and then, and pyarrow cannot push filters into files that mix string and string_view.)
        """
        files = self.files(name) if files is None else files
        if not files:
            return f"(select * from {_empty_view(name)})"
        listing = ", ".join(string_literal(f) for f in files)
        # Partition values live in the paths (day=2026-11-24/...), not in the files.
        hive = ", hive_partitioning = true" if name in PARTITIONS else ", hive_partitioning = false"
        scan = f"read_parquet([{listing}], union_by_name = true{hive})"
        if name in ADDED_COLUMNS:  # files written before a column existed read it as NULL
            return f"(select * from {scan} union all by name select * from {_empty_view(name)})"
        return scan

    def read(self, name: str, where: str | None = None, params: list | None = None,
             columns: Sequence[str] | None = None) -> pa.Table:
        """Rows of the current snapshot matching a DuckDB `where` clause (``?`` placeholders)."""
        schema = SCHEMAS[name]
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        files = self.files(name)
        if not files:
            return empty(schema)
        con = duckdb.connect()
        try:
            self.configure_duckdb(con)
            query = f"select {', '.join(chr(34) + n + chr(34) for n in schema.names)} from {self.scan_sql(name, files)}"
            if where:
                query += f" where {where}"
            result = con.sql(query, params=params or None).to_arrow_table()
        finally:
            con.close()
        return result.cast(schema)

    def read_keyed(self, name: str, column: str, values: Iterable[object], where: str | None = None,
                   params: list | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows whose `column` is one of `values` (and that match `where`, if given).

        Up to `LITERAL_LIST_MAX` values are written into the query as literals; more strings as
        one literal that the query splits (`split_list`): DuckDB imports pandas (0.2-0.3 s, ~40
        MiB) before it binds any parameter, and a re-scan of 20,000 inputs paid that for its
        paths. Only what no literal can hold (a NUL) or a long list of numbers is bound."""
        keys = sorted(set(values))
        if not keys:
            return empty(pa.schema([SCHEMAS[name].field(c) for c in columns]) if columns else SCHEMAS[name])
        split = split_list(keys) if len(keys) > LITERAL_LIST_MAX and all(isinstance(k, str) for k in keys) else None
        if len(keys) <= LITERAL_LIST_MAX and writable(keys):
            clause, bound = f"{column} in ({literal_list(keys)})", []
        elif split is not None:
            clause, bound = f"{column} in (select unnest({split}))", []
        else:
            clause, bound = f"{column} in (select unnest(?))", [keys]
        return self.read(name, where=f"({where}) and {clause}" if where else clause,
                         params=[*(params or []), *bound], columns=columns)

    def add_missing_columns(self, name: str) -> list[str]:
        """Add the columns of `ADDED_COLUMNS` that an older home's table lacks (one schema commit,
        no data rewritten); returns what was added. `ensure` calls it before every write."""
        if name not in ADDED_COLUMNS or name in self._current:
            return []
        dt = self.open(name)
        if dt is None:
            return []
        have = set(dt.schema().to_arrow().names)
        missing = [SCHEMAS[name].field(c) for c in ADDED_COLUMNS[name] if c not in have]
        if missing:
            from deltalake import Field

            self._retry(lambda: self.open(name).alter.add_columns([Field.from_arrow(f) for f in missing]),
                        f"add columns to {name}")
        self._current.add(name)
        return [f.name for f in missing]

    def conform(self, name: str, rows: list[dict] | pa.Table, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows cast to the table's schema (or to just `columns` of it, for a partial update)."""
        schema = SCHEMAS[name]
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        if not isinstance(rows, pa.Table) and not rows:
            return empty(schema)
        if isinstance(rows, pa.Table):
            return rows.select(schema.names).cast(schema)
        return pa.Table.from_pylist(rows, schema=schema)

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        return with_commit_retries(fn, self.commit_retries, what)

    def append(self, name: str, rows: list[dict] | pa.Table) -> int:
        """Append all rows in one commit. Appends never conflict with each other in Delta, so
        this is only for rows whose keys are unique by construction (random or content ids)."""
        data = self.conform(name, rows)
        if data.num_rows:
            self.ensure(name)
            self._retry(lambda: write_deltalake(self.uri(name), data, mode="append",
                                                partition_by=PARTITIONS.get(name),
                                                writer_properties=writer_properties(),
                                                storage_options=self.storage_options), f"append to {name}")
        return data.num_rows

    def delete_matching(self, name: str, rows: list[dict], keys: Sequence[str]) -> int:
        """Delete the rows whose `keys` equal one of `rows` (a merge: no SQL literals are built
        from user-supplied values)."""
        if not rows or not self.exists(name):
            return 0
        source = pa.Table.from_pylist([{k: r[k] for k in keys} for r in rows],
                                      schema=pa.schema([SCHEMAS[name].field(k) for k in keys]))
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)

        def attempt() -> int:
            result = (self._table(name).merge(source, predicate, source_alias="s", target_alias="t",
                                              streamed_exec=False, writer_properties=writer_properties())
                      .when_matched_delete().execute())
            return int(result.get("num_target_rows_deleted", 0))

        return self._retry(attempt, f"delete from {name}")

    def replace(self, name: str, rows: list[dict] | pa.Table) -> int:
        """Overwrite a derived table with a new snapshot (one commit; old files stay for time travel)."""
        data = self.conform(name, rows)
        self.ensure(name)
        self._retry(lambda: write_deltalake(self.uri(name), data, mode="overwrite",
                                            writer_properties=writer_properties(),
                                            storage_options=self.storage_options), f"replace {name}")
        return data.num_rows

    def merge(self, name: str, rows: list[dict] | pa.Table, keys: Sequence[str], update: bool = True,
              columns: Sequence[str] | None = None, insert: bool = True, changed: str | None = None,
              set_to: Mapping[str, str] | None = None) -> dict:
        """One commit that upserts rows by `keys`.

        update=False: insert-if-absent. columns: update only these columns of matched rows (the
        rest belongs to other processes). insert=False: update only; `rows` may then carry just
        `keys` + `columns`. changed: a predicate over t./s. so unchanged rows are not rewritten.
        set_to: for some of `columns`, an expression over t./s. to write instead of ``s.<column>``.

        The source is an Arrow table in memory already, so it is not streamed (`streamed_exec`):
        deltalake then derives a predicate from the source's keys and skips the target files it
        rules out, and the merge reads less of a table the source touches only in part.

        Always a real merge, even into a table that was just created: two writers racing on a new
        home must not both append the same key. Delta rejects the second of two concurrent merges
        (it read a snapshot the first changed), and the retry re-evaluates the key match."""
        data = self.conform(name, rows, None if insert else [*keys, *(columns or [])])
        if not data.num_rows:
            return {}
        if not insert and not self.exists(name):
            return {}
        self.ensure(name)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)

        def attempt() -> dict:
            table = self._table(name)  # the snapshot this attempt merges into (and conflicts on)
            failpoint(f"merge-{name}")  # tests hold writers here once each has read its snapshot
            merger = table.merge(data, predicate, source_alias="s", target_alias="t",
                                 streamed_exec=False, writer_properties=writer_properties())
            if columns is not None:
                merger = merger.when_matched_update({c: (set_to or {}).get(c, f"s.{c}") for c in columns},
                                                    predicate=changed)
            elif update:
                merger = merger.when_matched_update_all(predicate=changed)
            if insert:
                merger = merger.when_not_matched_insert_all()
            return merger.execute()

        return self._retry(attempt, f"merge into {name}")

    def ensure(self, name: str) -> None:
        """Create the table empty if it does not exist. Idempotent under races: of several
        creators one commit makes the table and the others find it there."""
        if self.exists(name):
            self.add_missing_columns(name)
            return
        try:
            write_deltalake(self.uri(name), empty(SCHEMAS[name]), mode="append",
                            partition_by=PARTITIONS.get(name), storage_options=self.storage_options)
        except (CommitFailedError, DeltaError):
            if not self.exists(name):
                raise

    def ensure_all(self) -> None:
        """Create empty tables so SQL views exist before the first ingest."""
        for name in SCHEMAS:
            self.ensure(name)


def empty(schema: pa.Schema) -> pa.Table:
    """An empty table of `schema`. (`schema.empty_table()` and `from_pylist([])` make pyarrow
    import pandas: 0.3-0.4 s that a run with nothing to write need not pay.)"""
    return pa.Table.from_batches([], schema=schema)


def _empty_view(name: str) -> str:
    """A typed, empty relation for a table that has no data files yet."""
    cols = ", ".join(f"cast(null as {_duck_type(f.type)}) as {f.name}" for f in SCHEMAS[name])
    return f"(select {cols} where false)"


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return _duck_type(t.value_type) + "[]"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    return {pa.string(): "varchar", pa.int64(): "bigint", pa.int32(): "integer", pa.float64(): "double",
            pa.bool_(): "boolean", pa.date32(): "date"}.get(t, "varchar")
