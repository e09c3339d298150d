"""DuckDB over the Delta tables: each table is a view with the table's name."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from asset_pipeline.errors import QueryError
from asset_pipeline.location import Location
from asset_pipeline.results import QueryResult
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


def query_error(exc: duckdb.Error) -> QueryError:
    """DuckDB's message without its source excerpt (``LINE 1: …`` and the caret), on one line."""
    text = str(exc).split("\n\nLINE ")[0]
    return QueryError(" ".join(text.split()))


def query(tables: Tables, home: Location, sql: str, params: list | dict | None = None) -> QueryResult:
    """Run DuckDB SQL over every Delta table's view and the usage reports published in `home`."""
    from asset_pipeline.usage.reports import attach_reports

    con = connect(tables)
    try:
        attach_reports(con, home)
        try:
            relation = con.sql(sql, params=params)
            table = relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise query_error(exc) from exc
        return QueryResult(table)
    finally:
        con.close()
