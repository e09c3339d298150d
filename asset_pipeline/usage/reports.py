"""The analysts' DuckDB file (``<home>/analytics.duckdb``): views over the Delta tables in schema
`pipeline`, and the dbt_usage models next to them; plus copying usage stats back into `assets`."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb

from asset_pipeline.errors import AssetPipelineError
from asset_pipeline.tables import SCHEMAS, Tables

ANALYTICS_FILE = "analytics.duckdb"
REPORTS = ("daily_usage", "popular_assets", "asset_usage_stats", "storage_by_project")


def analytics_path(home: Path) -> Path:
    return Path(home) / ANALYTICS_FILE


def _when_unlocked(path: Path, open_it, attempts: int = 50):
    """DuckDB lets one process write a file at a time: wait out a running dbt build (10 s)."""
    for i in range(attempts):
        try:
            return open_it()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or i == attempts - 1:
                raise AssetPipelineError(f"{path} is busy (a report build holds it): {exc}") from exc
            time.sleep(0.2)
    raise AssertionError("unreachable")


def _connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    return _when_unlocked(path, lambda: duckdb.connect(str(path), read_only=read_only))


def refresh_sources(tables: Tables, path: Path) -> None:
    """(Re)point the `pipeline.*` views at the tables' current Delta snapshots. Run before dbt and
    whenever analysts want the newest data in the file."""
    con = _connect(path)
    try:
        con.execute("create schema if not exists pipeline")
        for name in SCHEMAS:
            con.execute(f"create or replace view pipeline.{name} as select * from {tables.scan_sql(name)}")
    finally:
        con.close()


def attach_reports(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Expose the dbt models that exist in the analytics file as views on `con` (read-only)."""
    if not path.exists():
        return []
    quoted = str(path).replace("'", "''")
    _when_unlocked(path, lambda: con.execute(f"attach '{quoted}' as analytics (read_only)"))
    present = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_catalog = 'analytics' "
        "and table_schema = 'main'").fetchall()}
    names = [r for r in REPORTS if r in present]
    for name in names:
        con.execute(f"create or replace view {name} as select * from analytics.main.{name}")
    return names


def report_numbers(path: Path, day: str) -> dict:
    """Key numbers of one day's reports, for the Dagster UI."""
    con = _connect(path, read_only=True)
    try:
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


def refresh_asset_usage(tables: Tables, path: Path) -> int:
    """Copy download_count and last_accessed from `asset_usage_stats` into `assets` (one merge,
    only rows that changed), so the retention sweep can select unused assets."""
    con = _connect(path, read_only=True)
    try:
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
