"""Small helpers that turn results into Dagster metadata values."""

import dagster as dg


def markdown_table(rows: list[dict]) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_none_")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _type_name(t) -> str:
    import pyarrow as pa

    if pa.types.is_list(t):
        return f"list<{_type_name(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


def column_schema(name: str) -> dg.TableSchema:
    """The Delta table's columns, for the UI's schema tab."""
    from asset_pipeline.tables import SCHEMAS

    return dg.TableSchema(columns=[dg.TableColumn(f.name, _type_name(f.type)) for f in SCHEMAS[name]])


def schema_metadata(name: str) -> dict:
    """Definition-time metadata of a Delta-table asset: its column schema."""
    return {"dagster/column_schema": column_schema(name)}


def table_metadata(tables, name: str) -> dict:
    """Materialization metadata every Delta-table asset carries: row count (from the Delta log's
    per-file statistics, no scan), columns, the table's version and where it lives."""
    dt = tables.open(name)
    rows = 0
    if dt is not None:
        actions = dt.get_add_actions(flatten=True)
        counts = actions.column("num_records").to_pylist() if "num_records" in actions.column_names else []
        rows = int(sum(c or 0 for c in counts))
    return {"dagster/row_count": rows, "dagster/column_schema": column_schema(name),
            "delta_version": dt.version() if dt is not None else -1,
            "dagster/uri": dg.MetadataValue.path(tables.uri(name))}


def report_metadata(rows: int, columns: list[tuple[str, str]]) -> dict:
    """Row count and columns of a report table (a dbt model), as the UI shows them for tables."""
    return {"dagster/row_count": rows,
            "dagster/column_schema": dg.TableSchema(columns=[dg.TableColumn(c, t.lower()) for c, t in columns])}
