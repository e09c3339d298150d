"""The usage reports' DuckDB files, and copying usage stats back into `assets`.

Three places, so that no reader ever blocks a writer and no view is ever stale:
- ``<home>/analytics/build.duckdb`` belongs to the pipeline: dbt builds the reports there, one
  build at a time (the home's analytics lock). Its incremental models keep their state there.
- ``<home>/analytics.duckdb`` is the analysts' file. A build publishes a copy of the build file
  under a temporary name and renames it into place, so a session that has the file open (read-only
  or read-write) keeps reading the snapshot it opened and never stops a build.
- ``<home>/analytics/reports/<model>.parquet``: each model as Parquet, published the same way, for
  `Catalog.sql` and the pipeline's own reads (no DuckDB file lock involved).

In both DuckDB files the Delta tables are views over DuckDB's ``delta_scan`` (schema `pipeline`,
and the same names in `main`), which read the table's current snapshot at query time: a view made
yesterday shows this morning's ingest.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import duckdb

from asset_pipeline.tables import SCHEMAS, Tables

ANALYTICS_FILE = "analytics.duckdb"
REPORTS = ("daily_usage", "popular_assets", "asset_usage_stats", "storage_by_project")


def analytics_path(home: Path) -> Path:
    """The analysts' file (published by every report build)."""
    return Path(home) / ANALYTICS_FILE


def build_path(home: Path) -> Path:
    """The pipeline's own build file (dbt's target database)."""
    return Path(home) / "analytics" / "build.duckdb"


def reports_dir(home: Path) -> Path:
    return Path(home) / "analytics" / "reports"


def delta_extension() -> str:
    """The DuckDB `delta` extension shipped by the duckdb-extension-delta package (nothing is
    downloaded at run time)."""
    import duckdb_extension_delta

    folder = Path(duckdb_extension_delta.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    return str(folder / "delta.duckdb_extension")


def load_delta(con: duckdb.DuckDBPyConnection) -> None:
    """Make `delta_scan` available on `con`, and installed for plain DuckDB sessions of this
    version (so an analyst's own session on the published file can read its views)."""
    installed = con.execute("select installed from duckdb_extensions() where extension_name = 'delta'").fetchall()
    if not installed or not installed[0][0]:
        con.execute(f"install '{delta_extension()}'")
    con.execute("load delta")


def define_table_views(con: duckdb.DuckDBPyConnection, tables: Tables) -> None:
    """`pipeline.<table>` and `main.<table>` over each Delta table's current snapshot."""
    load_delta(con)
    con.execute("create schema if not exists pipeline")
    for name in SCHEMAS:
        tables.ensure(name)
        path = tables.uri(name).replace("'", "''")
        con.execute(f"create or replace view pipeline.{name} as select * from delta_scan('{path}')")
        con.execute(f"create or replace view main.{name} as select * from pipeline.{name}")


def prepare_build(tables: Tables, home: Path) -> Path:
    """The build file with its source views in place (run under the analytics lock)."""
    path = build_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        define_table_views(con, tables)
    finally:
        con.close()
    return path


def publish(home: Path) -> list[str]:
    """After a build: the models as Parquet snapshots, then the analysts' file — each written under
    a temporary name and renamed into place. Returns the models published."""
    build = build_path(home)
    con = duckdb.connect(str(build))
    try:
        con.execute("checkpoint")  # everything in the main file, nothing left in its WAL
        present = {r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'main'").fetchall()}
        names = [r for r in REPORTS if r in present]
        out = reports_dir(home)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            tmp = out / f".{name}.{uuid.uuid4().hex[:8]}.parquet"
            con.execute(f"copy main.{name} to '{tmp}' (format parquet)")
            os.replace(tmp, out / f"{name}.parquet")
    finally:
        con.close()
    target = analytics_path(home)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    shutil.copyfile(build, tmp)
    os.replace(tmp, target)  # a session holding the old file keeps the old snapshot
    return names


def attach_reports(con: duckdb.DuckDBPyConnection, home: Path) -> list[str]:
    """The published reports as views on `con` (Parquet snapshots: no lock on any DuckDB file)."""
    names = []
    for name in REPORTS:
        path = reports_dir(home) / f"{name}.parquet"
        if path.exists():
            quoted = str(path).replace("'", "''")
            con.execute(f"create or replace view {name} as select * from read_parquet('{quoted}')")
            names.append(name)
    return names


def report_numbers(home: Path, day: str) -> dict:
    """Key numbers of one day's reports, for the Dagster UI."""
    con = duckdb.connect()
    try:
        attach_reports(con, home)
        daily = con.execute("select action, events, distinct_assets, distinct_users from daily_usage "
                            "where day = ?::date order by action", [day]).fetchall()
        popular = con.execute("select asset_id, downloads, events from popular_assets where day = ?::date "
                              "order by rank limit 10", [day]).fetchall()
        storage = con.execute("select cast(sum(logical_bytes) as bigint), cast(sum(stored_bytes) as bigint), "
                              "cast(sum(bytes_saved_by_dedup) as bigint) from storage_by_project").fetchall()[0]
        stats = con.execute("select count(*), cast(sum(downloads) as bigint) from asset_usage_stats").fetchall()[0]
    finally:
        con.close()
    return {
        "daily": [{"action": a, "events": e, "distinct_assets": da, "distinct_users": du} for a, e, da, du in daily],
        "events": sum(r[1] for r in daily),
        "popular": [{"asset_id": a, "downloads": d, "events": e} for a, d, e in popular],
        "storage": {"logical_bytes": storage[0] or 0, "stored_bytes": storage[1] or 0,
                    "bytes_saved_by_dedup": storage[2] or 0},
        "assets_with_usage": stats[0], "downloads_to_date": stats[1] or 0,
    }


def refresh_asset_usage(tables: Tables, home: Path) -> int:
    """Copy download_count and last_accessed from `asset_usage_stats` into `assets` (one merge,
    only rows that changed), so the retention sweep can select unused assets."""
    con = duckdb.connect()
    try:
        if "asset_usage_stats" not in attach_reports(con, home):
            return 0
        stats = con.sql("select asset_id as id, downloads as download_count, last_accessed "
                        "from asset_usage_stats").to_arrow_table()
    finally:
        con.close()
    if stats.num_rows == 0:
        return 0
    result = tables.merge("assets", stats, keys=("id",), columns=("download_count", "last_accessed"), insert=False,
                          changed="t.download_count IS NULL OR t.download_count <> s.download_count"
                                  " OR t.last_accessed IS NULL OR t.last_accessed <> s.last_accessed")
    return int(result.get("num_target_rows_updated", 0))
