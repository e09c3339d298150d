"""The usage reports' DuckDB files, and copying usage stats back into `assets`.

Three places, so that no reader ever blocks a writer and no view is ever stale:
- ``<home>/analytics/build.duckdb`` belongs to the pipeline: dbt builds the reports there, one
  build at a time (the home's analytics lock). Its incremental models keep their state there. For a
  home on S3 the build runs on a local copy that is uploaded back when it succeeds.
- ``<home>/analytics.duckdb`` is the analysts' file. A build publishes a copy of the build file
  under a temporary name and renames it into place (one PUT on S3), so a session that has the file
  open, read-only or read-write, keeps reading the snapshot it opened and never stops a build.
- ``<home>/analytics/reports/<model>.parquet``: each model as Parquet, published the same way, for
  `Catalog.sql` and the pipeline's own reads (no DuckDB file lock involved).

In both DuckDB files the Delta tables are views over DuckDB's ``delta_scan`` (schema `pipeline`,
and the same names in `main`), which read a table's current snapshot at query time: a view made
yesterday shows this morning's ingest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from asset_pipeline.failpoints import failpoint
from asset_pipeline.location import Location
from asset_pipeline.sql_literals import string_literal
from asset_pipeline.tables import SCHEMAS, Tables

ANALYTICS_FILE = "analytics.duckdb"
REPORTS = ("daily_usage", "popular_assets", "asset_usage_stats", "storage_by_project")


def analytics_path(home: Location) -> Location:
    """The analysts' file (published by every report build)."""
    return home / ANALYTICS_FILE


def reports_dir(home: Location) -> Location:
    return home / "analytics" / "reports"


def extension_file(name: str) -> str:
    """A DuckDB extension shipped by its duckdb-extension-<name> package (nothing is downloaded
    at run time; the packages are pinned to the DuckDB version)."""
    import importlib

    package = importlib.import_module(f"duckdb_extension_{name}")
    folder = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    return str(folder / f"{name}.duckdb_extension")


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load `name` on `con`, installing it first into DuckDB's extension folder so that plain
    DuckDB sessions of this version (an analyst's own) autoload it too."""
    installed = con.execute("select installed from duckdb_extensions() "
                            f"where extension_name = {string_literal(name)}").fetchall()
    if not installed or not installed[0][0]:
        con.execute(f"install {string_literal(extension_file(name))}")
    con.execute(f"load {name}")


def define_table_views(con: duckdb.DuckDBPyConnection, tables: Tables) -> None:
    """`pipeline.<table>` and `main.<table>` over each Delta table's current snapshot."""
    load_extension(con, "delta")
    tables.configure_duckdb(con)
    con.execute("create schema if not exists pipeline")
    for name in SCHEMAS:
        tables.ensure(name)
        delta = string_literal(tables.uri(name))
        con.execute(f"create or replace view pipeline.{name} as select * from delta_scan({delta})")
        con.execute(f"create or replace view main.{name} as select * from pipeline.{name}")


@contextmanager
def build_file(tables: Tables, home: Location) -> Iterator[Path]:
    """The build file, local, with its source views in place (hold the analytics lock).

    A local home builds in place. An S3 home downloads the last build (the incremental models'
    state), builds on that copy and uploads it back only if the build got through."""
    if not home.is_s3:
        path = (home / "analytics" / "build.duckdb").path
        path.parent.mkdir(parents=True, exist_ok=True)
        _with_views(path, tables)
        yield path
        return
    remote = home / "analytics" / "build.duckdb"
    with tempfile.TemporaryDirectory(prefix="asset-pipeline-build-") as tmp:
        path = Path(tmp) / "build.duckdb"
        if remote.is_file():
            remote.download(path)
        _with_views(path, tables)
        yield path
        _checkpoint(path)
        remote.upload(path)


def _with_views(path: Path, tables: Tables) -> None:
    con = duckdb.connect(str(path))
    try:
        define_table_views(con, tables)
    finally:
        con.close()


def _checkpoint(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("checkpoint")  # everything in the main file, nothing left in its WAL
    finally:
        con.close()


def _replace(target: Location, local: Path) -> None:
    """Put a local file at `target` as a whole: a rename next to it, or one upload."""
    if target.is_s3:
        target.upload(local)
        return
    target.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.path.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    shutil.copyfile(local, tmp)
    os.replace(tmp, target.path)  # a session holding the old file keeps the old snapshot


def publish(home: Location, build: Path) -> list[str]:
    """After a build: the models as Parquet snapshots, then the analysts' file. Returns the
    models published."""
    _checkpoint(build)
    con = duckdb.connect(str(build), read_only=True)
    try:
        present = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'").fetchall()}
        names = [r for r in REPORTS if r in present]
        with tempfile.TemporaryDirectory(prefix="asset-pipeline-reports-") as tmp:
            for name in names:
                local = Path(tmp) / f"{name}.parquet"
                con.execute(f"copy main.{name} to {string_literal(str(local))} (format parquet)")
                _replace(reports_dir(home) / f"{name}.parquet", local)
    finally:
        con.close()
    _replace(analytics_path(home), build)
    return names


def attach_reports(con: duckdb.DuckDBPyConnection, home: Location) -> list[str]:
    """The published reports as views on `con` (Parquet snapshots: no lock on any DuckDB file).
    `con` must be able to read the home (see `Tables.configure_duckdb`)."""
    names = []
    for entry in reports_dir(home).list((".parquet",)):
        name = entry.name.removesuffix(".parquet")
        if name in REPORTS:
            parquet = string_literal((reports_dir(home) / entry.name).uri)
            con.execute(f"create or replace view {name} as select * from read_parquet({parquet})")
            names.append(name)
    return names


def _reports_connection(tables: Tables, home: Location) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    con = duckdb.connect()
    tables.configure_duckdb(con)
    return con, attach_reports(con, home)


def report_numbers(tables: Tables, home: Location, day: str) -> dict:
    """Key numbers of one day's reports, for the Dagster UI (from the reports published so far:
    a run builds the per-day reports and the snapshots in steps of their own, in either order)."""
    con, names = _reports_connection(tables, home)

    def rows(name: str, sql: str, params: list | None = None) -> list[tuple]:
        return con.execute(sql, params or []).fetchall() if name in names else []

    try:
        daily = rows("daily_usage", "select action, events, distinct_assets, distinct_users from daily_usage "
                                    "where day = ?::date order by action", [day])
        popular = rows("popular_assets", "select asset_id, downloads, events from popular_assets "
                                         "where day = ?::date order by rank limit 10", [day])
        storage = (rows("storage_by_project", "select cast(sum(logical_bytes) as bigint), "
                        "cast(sum(stored_bytes) as bigint), cast(sum(bytes_saved_by_dedup) as bigint) "
                        "from storage_by_project") or [(0, 0, 0)])[0]
        stats = (rows("asset_usage_stats", "select count(*), cast(sum(downloads) as bigint) "
                                           "from asset_usage_stats") or [(0, 0)])[0]
        shapes = {name: (con.execute(f'select count(*) from "{name}"').fetchone()[0],
                         [(c, t) for c, t, *_ in con.execute(f'describe "{name}"').fetchall()])
                  for name in REPORTS if name in names}
    finally:
        con.close()
    return {
        "daily": [{"action": a, "events": e, "distinct_assets": da, "distinct_users": du} for a, e, da, du in daily],
        "events": sum(r[1] for r in daily),
        "popular": [{"asset_id": a, "downloads": d, "events": e} for a, d, e in popular],
        "storage": {"logical_bytes": storage[0] or 0, "stored_bytes": storage[1] or 0,
                    "bytes_saved_by_dedup": storage[2] or 0},
        "assets_with_usage": stats[0], "downloads_to_date": stats[1] or 0,
        "tables": shapes,  # each published report's (rows, [(column, DuckDB type)])
    }


def refresh_asset_usage(tables: Tables, home: Location) -> int:
    """Copy download_count and last_accessed from `asset_usage_stats` into `assets` (one merge,
    only rows that changed), so the retention sweep can select unused assets.

    Only forward, each on its own: the stats are a snapshot of every event recorded so far and no
    event is ever removed, so both only grow. A report run that read older stats and writes last
    must not turn either back."""
    con, names = _reports_connection(tables, home)
    try:
        if "asset_usage_stats" not in names:
            return 0
        stats = con.sql("select asset_id as id, downloads as download_count, last_accessed "
                        "from asset_usage_stats").to_arrow_table()
    finally:
        con.close()
    if stats.num_rows == 0:
        return 0
    failpoint("usage-refresh-merge")
    newer = {c: f"(t.{c} IS NULL OR s.{c} > t.{c})" for c in ("download_count", "last_accessed")}
    result = tables.merge("assets", stats, keys=("id",), columns=tuple(newer), insert=False,
                          changed=" OR ".join(newer.values()),
                          set_to={c: f"CASE WHEN {test} THEN s.{c} ELSE t.{c} END" for c, test in newer.items()})
    return int(result.get("num_target_rows_updated", 0))
