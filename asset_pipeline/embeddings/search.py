"""Search over one model's LanceDB table: text→image, image→image, full-text over prompts, and
hybrid (vector + full-text, reranked with reciprocal rank fusion)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from asset_pipeline.embeddings.model import LoadedModel
from asset_pipeline.errors import SearchError
from asset_pipeline.formats import ASSET_TYPES
from asset_pipeline.sql_literals import literal, literal_list, writable

FILTER_KEYS = {"project", "type", "tags", "status", "created_after", "created_before", "asset_id"}
STATUSES = ("active", "archived", "deleted")
RESULT_COLUMNS = ("asset_id", "version", "sha256", "name", "type", "project", "tags", "prompt", "status",
                  "created_at")


_ALLOWED = {"type": ASSET_TYPES, "status": STATUSES}


def _values(key: str, value: Any) -> list[str]:
    """A name or a non-empty list of names: anything else is a user mistake, said as such (not a
    TypeError from here or a parse error from LanceDB)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple, set, frozenset)) or not values or \
            not all(isinstance(v, str) and v for v in values):
        raise SearchError(f"filter {key!r} must be a name or a non-empty list of names, got {value!r}")
    if not writable(values):
        raise SearchError(f"filter {key!r} has a name with a NUL character: {value!r}")
    allowed = _ALLOWED.get(key)
    if allowed and set(values) - set(allowed):
        raise SearchError(f"filter {key!r} has {sorted(set(values) - set(allowed))}, not one of {', '.join(allowed)}")
    return sorted(values) if isinstance(values, (set, frozenset)) else list(values)


def _time(key: str, value: Any) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SearchError(f"filter {key!r} is not an ISO 8601 date or time: {value!r}") from None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    raise SearchError(f"filter {key!r} must be a date, a datetime or an ISO 8601 string, got "
                      f"{type(value).__name__} {value!r}")


def where_clause(filters: dict[str, Any] | None, include_inactive: bool = False,
                 default_status: bool = True) -> str | None:
    """SQL for LanceDB from ``{project, type, tags, status, created_after, created_before, asset_id}``.
    Archived and deleted assets are left out unless `status` asks for them or `include_inactive`
    (`default_status=False`: not by this clause — the caller drops them afterwards).
    Every value is checked first: a wrong type is a SearchError naming the filter."""
    if filters is not None and not isinstance(filters, dict):
        raise SearchError(f"filters must be a dict of {sorted(FILTER_KEYS)}, got {type(filters).__name__}")
    if not isinstance(include_inactive, bool):
        raise SearchError(f"include_inactive must be true or false, got {include_inactive!r}")
    filters = dict(filters or {})
    unknown = set(filters) - FILTER_KEYS
    if unknown:
        raise SearchError(f"unknown search filter(s) {sorted(unknown)}; known: {sorted(FILTER_KEYS)}")
    parts = []
    for key in ("project", "type", "status", "asset_id"):
        if key in filters:
            parts.append(f"{key} IN ({literal_list(_values(key, filters[key]))})")
    if "status" not in filters and not include_inactive and default_status:
        parts.append("status = 'active'")
    if "tags" in filters:
        parts.append(f"array_has_any(tags, [{literal_list(_values('tags', filters['tags']))}])")
    for key, op in (("created_after", ">="), ("created_before", "<")):
        if key in filters:
            parts.append(f"created_at {op} {literal(_time(key, filters[key]))}")
    return " AND ".join(parts) or None


def image_vector(model: LoadedModel, image: Any) -> np.ndarray:
    """Embedding of a path, raw bytes, or a PIL image."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        img = Image.open(image)
    elif isinstance(image, (bytes, bytearray)):
        img = Image.open(io.BytesIO(image))
    else:
        img = image
    tensor = model.preprocess(img.convert("RGB")).unsqueeze(0)
    return model.encode_images(tensor)[0].numpy()


# Above this share of inactive assets the index filters on status itself; below it the few
# inactive hits are dropped after the query, by the assets' live statuses.
PREFILTER_INACTIVE_SHARE = 0.2

# Query-time settings for the IVF-HNSW-SQ index: partitions probed, HNSW beam width, and how many
# candidates per hit are re-ranked on the full vectors. bench/search.py measures them at 1M
# clustered 512-d vectors: the bare query at 10/64/2 kept recall@10 at 0.955 for 5.2 ms where
# 12/100/5 took 7.6 ms; Catalog.search at 8/64/2 against 10/64/2, interleaved with the settings
# taking turns to go first: p50 9.54 against 9.68 ms (lower in 5 of 6 rounds; the bare query 7.59
# against 8.75), p95 11.27 against 12.58, recall@10 0.969 against 0.972 (a run with 8 always
# first had shown 7.68 against 8.94). Where one query's time went at 10 probes (LanceDB's
# analyze_plan): choosing partitions 0.5 ms, HNSW in 10 partitions 2.1 ms, reading 24 full
# vectors to re-rank 0.75 ms, then the hits' columns 1.8 ms.
ANN_NPROBES, ANN_EF, ANN_REFINE = 8, 64, 2


def vector_query(table: Any, vector: Any, limit: int) -> Any:
    """A cosine top-`limit` query that uses the ANN index when the table has one (exact otherwise).
    HNSW's beam must cover every candidate the refine step re-ranks."""
    values = np.asarray(vector, dtype=np.float32)
    return (table.search(values, vector_column_name="vector").distance_type("cosine")
            .nprobes(ANN_NPROBES).ef(max(ANN_EF, limit * ANN_REFINE)).refine_factor(ANN_REFINE).limit(limit))


Keep = Callable[[list[dict]], list[dict]]


def run_search(table: Any, *, vector: np.ndarray | None = None, query: str | None = None,
               where: str | None = None, k: int = 10, model_label: str = "", keep: Keep | None = None) -> list[dict]:
    """Best first, one hit per asset (its best-scoring version); `keep` drops hits (a status
    re-check) before they count towards `k`. `table` is a LanceDB table or a search session's
    `OpenTable` (its nearest-neighbour queries take one round trip through the async API).

    The index is asked for k + 20% rows (at least k + 2): every row asked for costs the query a
    refine re-rank and a fetch of its columns (2k rows took 9.0 ms where 12 took 7.2 at 1M, with
    the same recall); only when versions of one asset or dropped hits leave fewer than k is it
    asked again for four times as many."""
    if table is None:
        return []
    fetch = k + max(2, k // 5)
    while True:
        try:
            rows = _rows(table, vector, query, where, fetch)
        except Exception:  # noqa: BLE001 - an empty table has no indexes to search: no hits
            if getattr(table, "sync", table).count_rows() == 0:
                return []
            raise
        best: dict[str, dict] = {}
        for row in rows:
            score = row["_score_"]
            hit = {c: row[c] for c in RESULT_COLUMNS} | {"score": score, "model": model_label}
            if row["asset_id"] not in best or score > best[row["asset_id"]]["score"]:
                best[row["asset_id"]] = hit
        hits = sorted(best.values(), key=lambda h: -h["score"])
        if keep is not None:
            hits = keep(hits)
        if len(hits) >= k or len(rows) < fetch:
            return hits[:k]
        fetch *= 4


def _rows(table: Any, vector: np.ndarray | None, query: str | None, where: str | None, fetch: int) -> list[dict]:
    """Up to `fetch` rows of one query, each with its score as `_score_` (higher is better)."""
    if hasattr(table, "nearest"):
        if vector is not None and not query:
            rows = table.nearest(vector, where, fetch, list(RESULT_COLUMNS))
            for row in rows:
                row["_score_"] = 1.0 - row["_distance"]
            return rows
        table = table.sync
    if vector is not None and query:
        q = table.search(query_type="hybrid").vector(np.asarray(vector, dtype=np.float32)).text(query)
        q = q.distance_type("cosine")
        score_col = "_relevance_score"
    elif vector is not None:
        q = vector_query(table, vector, fetch)
        score_col = "_distance"
    elif query:
        q = table.search(query, query_type="fts")
        score_col = "_score"
    else:
        raise SearchError("search needs text=, image= or query=")
    if where:
        q = q.where(where, prefilter=True)
    # Plain searches name their score column (LanceDB warns otherwise). A hybrid search selects
    # nothing: its vector and full-text halves would each warn about the other's score column,
    # and naming those columns is refused; the fused `_relevance_score` comes with every row.
    if score_col != "_relevance_score":
        q = q.select([*RESULT_COLUMNS, score_col])
    rows = q.limit(fetch).to_arrow().to_pylist()
    for row in rows:
        row["_score_"] = 1.0 - row[score_col] if score_col == "_distance" else float(row[score_col])
    return rows
