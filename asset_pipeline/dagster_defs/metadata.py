"""Small helpers that turn results into Dagster metadata values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from asset_pipeline.home import Home
    from asset_pipeline.store import ObjectStore
    from asset_pipeline.tables import Tables

THUMBNAIL_PX = 64  # a preview table's pictures: big enough to recognise, small enough for the event log
MAX_THUMBNAILS = 20
# Metadata lives in the Dagster event log (a row per materialization, sent whole to the UI): the
# pictures of one preview stop at this many bytes of data URIs, the remaining rows show their type.
MAX_THUMBNAIL_BYTES = 120_000

# A picture column: the row keys holding the asset id and the version whose content it shows.
PictureKeys = tuple[str, str]


def markdown_table(rows: list[dict], columns: Sequence[str] | None = None, *,
                   pictures: Mapping[str, PictureKeys] | None = None, home: Home | None = None) -> dg.MetadataValue:
    """A markdown table of `rows` (their `columns`, all keys of the first row by default).

    With `pictures` (and the `home` to read blobs from), `thumbnail_table` adds picture columns
    first; the option lives here so that an asset's call site changes only in its arguments."""
    if pictures:
        if home is None:
            raise ValueError("a table with pictures needs the home that holds their blobs")
        return thumbnail_table(rows, home.tables, home.store, pictures, columns)
    if not rows:
        return dg.MetadataValue.md("_none_")
    cols = list(columns or rows[0])
    return dg.MetadataValue.md("\n".join(_table_lines(cols, [[_cell(r[c]) for c in cols] for r in rows])))


def thumbnail_table(rows: list[dict], tables: Tables, store: ObjectStore, pictures: Mapping[str, PictureKeys],
                    columns: Sequence[str] | None = None, *, size: int = THUMBNAIL_PX,
                    max_thumbnails: int = MAX_THUMBNAILS,
                    max_bytes: int = MAX_THUMBNAIL_BYTES) -> dg.MetadataValue:
    """A markdown table of `rows` whose first columns show pictures: for each `pictures` column,
    (asset id key, version key) name the row fields of the version shown there.

    Dagster's UI renders markdown metadata with `data:` images allowed (react-markdown with
    rehype-sanitize, ``data`` added to the ``src`` protocols), so a thumbnail travels inside the
    metadata value itself — no file server, nothing for the UI to fetch. Pictures of images only,
    at most `size` px on a side; other content (audio, video, prompts, models) shows its type. The
    value is stored in the event log, so there are at most `max_thumbnails` pictures of at most
    `max_bytes` of data URIs in all; the rows past that show ``image``."""
    from asset_pipeline.thumbnails import thumbnail_data_uri

    if not rows:
        return dg.MetadataValue.md("_none_")
    cols = list(columns or rows[0])
    keys = {(r[a], r[v]) for r in rows for a, v in pictures.values() if r.get(a) is not None}
    blobs = version_blobs(tables, keys)
    shown, used = 0, 0
    made: dict[str, str | None] = {}  # one decode per blob: a near-duplicate shows up in several pairs
    body = []
    for row in rows:
        cells = []
        for id_key, version_key in pictures.values():
            sha256, kind = blobs.get((row.get(id_key), row.get(version_key)), (None, ""))
            uri = None
            if sha256 and kind == "image" and shown < max_thumbnails:
                if sha256 not in made:
                    made[sha256] = thumbnail_data_uri(store, sha256, kind, size)
                uri = made[sha256]
                if uri and used + len(uri) > max_bytes:
                    uri = None
            if uri:
                shown, used = shown + 1, used + len(uri)
                cells.append(f"![{kind}]({uri})")
            else:
                cells.append(f"_{kind}_" if kind else "")
        body.append(cells + [_cell(row[c]) for c in cols])
    return dg.MetadataValue.md("\n".join(_table_lines(list(pictures) + cols, body)))


def version_blobs(tables: Tables, keys: set[tuple[str, int]]) -> dict[tuple[str, int], tuple[str, str]]:
    """{(asset id, version): (sha256, type)} of the given versions, from `asset_versions` (one
    filtered scan: the preview's rows do not carry the hash, and a pair of near-duplicates names
    only asset ids and versions)."""
    ids = sorted({a for a, _ in keys})
    if not ids:
        return {}
    found = tables.read("asset_versions", where=f"asset_id in ({', '.join('?' * len(ids))})", params=ids,
                        columns=["asset_id", "version", "sha256", "type"]).to_pylist()
    return {(r["asset_id"], r["version"]): (r["sha256"], r["type"]) for r in found
            if (r["asset_id"], r["version"]) in keys}


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table_lines(cols: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + ["| " + " | ".join(r) + " |" for r in body]


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
