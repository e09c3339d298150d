"""DuckDB over the Delta tables: each table is a view with the table's name."""

from __future__ import annotations

import duckdb

from asset_pipeline.tables import SCHEMAS, Tables


def connect(tables: Tables, names: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per Delta table (the current snapshot).

    Views read the Parquet files of each table's current Delta snapshot, so DuckDB pushes filters
    and projections down and nothing is copied until a query reads it."""
    con = duckdb.connect()
    tables.configure_duckdb(con)
    for name in names or list(SCHEMAS):
        con.execute(f"create or replace view {name} as select * from {tables.scan_sql(name)}")
    return con
