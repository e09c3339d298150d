"""Pairs of near-duplicate images: cosine similarity above a threshold in one model's space."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np


def near_duplicate_pairs(table: Any, model_id: str, threshold: float = 0.95, neighbours: int = 8,
                         query_batch: int = 256) -> list[dict]:
    """Each live image's current version against its nearest `neighbours` (batched vector queries,
    which use the ANN index once the table has one); a pair is reported once, ordered by id."""
    if table is None or table.count_rows() == 0:
        return []
    rows = (table.search().where("type = 'image' AND status = 'active'")
            .select(["asset_id", "version", "vector"]).limit(None).to_arrow().to_pylist())
    current: dict[str, dict] = {}
    for row in rows:
        if row["asset_id"] not in current or row["version"] > current[row["asset_id"]]["version"]:
            current[row["asset_id"]] = row
    latest = {(r["asset_id"], r["version"]) for r in current.values()}
    items = list(current.values())
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
