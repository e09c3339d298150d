"""Retention sweep over 1M asset rows, metadata only: policy selection, the audit rows and the
status merge on the 1M-row `assets` table, and the hard-delete pass — the parts of a sweep whose
cost grows with the catalog. (Moving blobs costs what copying them costs: see bench/ingest.py.)

    python bench/lifecycle.py                 # 1M assets, 10% selected
    python bench/lifecycle.py --assets 100000
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa


def build(tables, n: int) -> None:
    from asset_pipeline.tables import ASSET_VERSIONS, ASSETS

    rng = np.random.default_rng(0)
    now = datetime(2026, 11, 24, tzinfo=UTC)
    created = [now - timedelta(days=int(d)) for d in rng.integers(0, 720, n)]
    accessed = [c + timedelta(days=int(d)) if d < 400 else None for c, d in zip(created, rng.integers(0, 800, n))]
    ids = [f"a_{i:09d}" for i in range(n)]
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    types = np.array(["image", "video", "audio", "model", "prompt", "embedding"])[rng.integers(0, 6, n)]
    projects = np.char.add("p", rng.integers(0, 50, n).astype(str))
    sizes = rng.integers(1_000, 50_000_000, n)
    assets = {f.name: pa.nulls(n, f.type) for f in ASSETS}
    assets.update(id=pa.array(ids), name=pa.array(ids), project=pa.array(projects), type=pa.array(types),
                  format=pa.array(["png"] * n), size_bytes=pa.array(sizes), created_at=pa.array(created, ASSETS.field(
                      "created_at").type), created_by=pa.array(["bench"] * n), status=pa.array(["active"] * n),
                  current_version=pa.array(np.ones(n, np.int32)), current_sha256=pa.array(shas),
                  download_count=pa.array(np.zeros(n, np.int64)),
                  last_accessed=pa.array(accessed, ASSETS.field("last_accessed").type),
                  tags=pa.array([["draft"] if i % 7 == 0 else [] for i in range(n)], pa.list_(pa.string())))
    versions = {f.name: pa.nulls(n, f.type) for f in ASSET_VERSIONS}
    versions.update(asset_id=pa.array(ids), version=pa.array(np.ones(n, np.int32)), sha256=pa.array(shas),
                    size_bytes=pa.array(sizes), type=pa.array(types),
                    created_at=pa.array(created, ASSET_VERSIONS.field("created_at").type))
    tables.append("assets", pa.table(assets, schema=ASSETS))
    tables.append("asset_versions", pa.table(versions, schema=ASSET_VERSIONS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=1_000_000)
    args = ap.parse_args()

    from asset_pipeline.lifecycle.actions import Lifecycle
    from asset_pipeline.lifecycle.policies import parse_config
    from asset_pipeline.store import LocalObjectStore
    from asset_pipeline.tables import Tables

    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    tables = Tables(work / "tables")
    start = time.perf_counter()
    build(tables, args.assets)
    print(f"{args.assets:,} assets + versions written in {time.perf_counter() - start:.1f} s")
    lifecycle = Lifecycle(tables, LocalObjectStore(work), LocalObjectStore(work / "archive"))
    config = parse_config({"grace_period_days": 0, "allow_short_grace_period": True, "policies": [
        {"name": "stale-drafts", "action": "delete", "select": {"tags": ["draft"], "unused_for_days": 180}},
        {"name": "old-models", "action": "delete", "select": {"type": "model", "older_than_days": 540}},
        {"name": "unused-video", "action": "delete", "select": {"type": "video", "unused_for_days": 365,
                                                                 "project": ["p1", "p2", "p3"]}},
    ]})
    as_of = datetime(2026, 11, 25, tzinfo=UTC)
    rows: list[tuple[str, float, str]] = []

    start = time.perf_counter()
    selected = {p.name: lifecycle.select(p, as_of) for p in config.policies}
    rows.append(("select (3 policies)", time.perf_counter() - start,
                 f"{sum(len(v) for v in selected.values()):,} assets"))
    ids = sorted({i for v in selected.values() for i in v})
    from asset_pipeline.lifecycle.guard import tally

    start = time.perf_counter()
    counted = tally(tables, ids)
    rows.append(("mass-delete guard (share of assets and bytes)", time.perf_counter() - start,
                 f"{counted.assets:,} of {counted.active_assets:,} assets"))
    start = time.perf_counter()
    audit = lifecycle.apply("delete", ids, policy="bench", partition="2026-11-24", run_id="dry", dry_run=True)
    rows.append(("dry run: audit rows", time.perf_counter() - start, f"{audit:,} rows"))
    start = time.perf_counter()
    lifecycle.apply("delete", ids, policy="bench", partition="2026-11-24", run_id="real")
    rows.append((f"soft delete: audit + status merge into {args.assets:,} asset rows", time.perf_counter() - start,
                 f"{len(ids):,} assets"))
    start = time.perf_counter()
    purged, freed = lifecycle.hard_delete_expired(as_of + timedelta(days=1), 0, "2026-11-25", "real")
    rows.append(("hard-delete pass (refcounts, audit with bytes freed)", time.perf_counter() - start,
                 f"{purged:,} assets, {freed / 1e9:,.1f} GB"))
    total = sum(r[1] for r in rows)
    print(f"\n{'step':<58}{'seconds':>9}  result")
    for label, seconds, result in rows:
        print(f"{label:<58}{seconds:>9.2f}  {result}")
    print(f"{'sweep, metadata only':<58}{total:>9.2f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
