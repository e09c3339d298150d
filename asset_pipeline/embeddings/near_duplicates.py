"""Pairs of near-duplicate images: cosine similarity above a threshold in one model's space."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np


def near_duplicate_pairs(table: Any, model_id: str, threshold: float = 0.95, neighbours: int = 8,
                         query_batch: int = 256, skip: set[str] | None = None) -> list[dict]:
    """Each live image's current version against its nearest `neighbours` (batched vector queries,
    which use the ANN index once the table has one); a pair is reported once, ordered by id.
    Images in `skip` are not queried (the pHash pre-filter already paired them)."""
    if table is None or table.count_rows() == 0:
        return []
    rows = (table.search().where("type = 'image' AND status = 'active'")
            .select(["asset_id", "version", "vector"]).limit(None).to_arrow().to_pylist())
    current: dict[str, dict] = {}
    for row in rows:
        if row["asset_id"] not in current or row["version"] > current[row["asset_id"]]["version"]:
            current[row["asset_id"]] = row
    latest = {(r["asset_id"], r["version"]) for r in current.values()}
    items = [r for r in current.values() if not skip or r["asset_id"] not in skip]
    pairs: dict[tuple[str, str], dict] = {}
    now = datetime.now(UTC)
    for lo in range(0, len(items), query_batch):
        chunk = items[lo:lo + query_batch]
        vectors = np.asarray([r["vector"] for r in chunk], dtype=np.float32)
        hits = (table.search(list(vectors)).distance_type("cosine")
                .where("type = 'image' AND status = 'active'", prefilter=True)
                .select(["asset_id", "version", "_distance"]).limit(neighbours + 1).to_arrow().to_pylist())
        for hit in hits:
            a = chunk[hit["query_index"]]
            similarity = 1.0 - hit["_distance"]
            if hit["asset_id"] == a["asset_id"] or similarity < threshold or \
                    (hit["asset_id"], hit["version"]) not in latest:
                continue
            first, second = sorted([(a["asset_id"], a["version"]), (hit["asset_id"], hit["version"])])
            pairs[(first[0], second[0])] = {
                "asset_a": first[0], "version_a": first[1], "asset_b": second[0], "version_b": second[1],
                "similarity": round(float(similarity), 6), "model_id": model_id, "computed_at": now}
    return sorted(pairs.values(), key=lambda p: (-p["similarity"], p["asset_a"], p["asset_b"]))


def prefiltered_pairs(table: Any, model_id: str, candidates: list[dict], threshold: float = 0.95) -> list[dict]:
    """Candidate pairs (asset_a, version_a, asset_b, version_b — from the pHash join, which scales
    where all-pairs vector comparison does not) kept when their embeddings' cosine similarity
    passes `threshold`: only the candidates' vectors are read, no vector search runs."""
    if table is None or not candidates:
        return []
    ids = sorted({c["asset_a"] for c in candidates} | {c["asset_b"] for c in candidates})
    from asset_pipeline.embeddings.vectors import asset_ids_in

    rows = table.search().where(asset_ids_in(ids)).select(["asset_id", "version", "vector"]).limit(None) \
        .to_arrow().to_pylist()
    vectors = {(r["asset_id"], r["version"]): np.asarray(r["vector"], dtype=np.float32) for r in rows}
    now = datetime.now(UTC)
    out = []
    for c in candidates:
        a, b = vectors.get((c["asset_a"], c["version_a"])), vectors.get((c["asset_b"], c["version_b"]))
        if a is None or b is None:
            continue  # not embedded yet: the next run pairs it
        similarity = float(np.dot(a, b))  # stored vectors are unit length
        if similarity >= threshold:
            out.append({"asset_a": c["asset_a"], "version_a": c["version_a"], "asset_b": c["asset_b"],
                        "version_b": c["version_b"], "similarity": round(similarity, 6), "model_id": model_id,
                        "computed_at": now})
    return out
