"""Vector search benchmark: top-10 latency (p50/p95) and recall@10 against exact search, with
and without the ANN index, at 100k and 1M synthetic 512-d vectors (clustered, unit length, like
CLIP embeddings), through the same LanceDB table layout and query path the catalog uses.

    python bench/search.py                 # 100k and 1M
    python bench/search.py --sizes 100000 --queries 50
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa


def clustered(n: int, dim: int, rng: np.random.Generator, centers: int = 2000) -> np.ndarray:
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        out[lo:hi] = c[rng.integers(0, centers, hi - lo)] + 0.35 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def timed_queries(table, queries: np.ndarray, k: int, exact: bool = False) -> tuple[list[float], list[list[str]]]:
    """The catalog's own query path (`vector_query`), or the same query forced to scan everything."""
    from asset_pipeline.embeddings.search import vector_query

    latencies, results = [], []
    for q in queries:
        start = time.perf_counter()
        search = vector_query(table, q, k)
        if exact:
            search = search.bypass_vector_index()
        rows = search.select(["asset_id", "_distance"]).to_arrow()
        latencies.append((time.perf_counter() - start) * 1000)
        results.append(rows["asset_id"].to_pylist())
    return latencies, results


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()

    from asset_pipeline.embeddings import search as catalog_search
    from asset_pipeline.embeddings.vectors import VectorStore, schema

    k = 10
    print(f"{'rows':>9} {'search':<44}{'p50 ms':>8}{'p95 ms':>8}{'recall@10':>10}")
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix="search-bench-"))
        rng = np.random.default_rng(n)
        data = clustered(n, args.dim, rng)
        vs = VectorStore(work / "lancedb", ann_threshold=n)
        table = vs.open_or_create("bench", args.dim)
        sch = schema(args.dim)
        start = time.perf_counter()
        for lo in range(0, n, 100_000):
            hi = min(n, lo + 100_000)
            m = hi - lo
            table.add(pa.table({
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(data[lo:hi].ravel()), args.dim),
                "asset_id": pa.array([f"a_{i}" for i in range(lo, hi)]), "version": pa.array(np.ones(m, np.int32)),
                "sha256": pa.nulls(m, pa.string()), "name": pa.nulls(m, pa.string()),
                "type": pa.array(["image"] * m), "project": pa.array([f"p{i % 10}" for i in range(lo, hi)]),
                "tags": pa.nulls(m, pa.list_(pa.string())), "prompt": pa.nulls(m, pa.string()),
                "status": pa.array(["active"] * m), "created_at": pa.nulls(m, pa.timestamp("us", tz="UTC")),
                "model_id": pa.array(["bench"] * m), "embedded_at": pa.nulls(m, pa.timestamp("us", tz="UTC")),
            }, schema=sch))
        load_s = time.perf_counter() - start
        picks = rng.integers(0, n, args.queries)
        queries = data[picks] + 0.05 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)

        flat_lat, truth = timed_queries(table, queries, k, exact=True)
        print(f"{n:>9} {'exact (no index)':<44}{pct(flat_lat, 50):>8.1f}{pct(flat_lat, 95):>8.1f}{1.0:>10.3f}")
        start = time.perf_counter()
        report = vs.maintain(table)
        index_s = time.perf_counter() - start
        ann_lat, got = timed_queries(table, queries, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
        label = (f"IVF-HNSW-SQ (nprobes {catalog_search.ANN_NPROBES}, ef {catalog_search.ANN_EF}, "
                 f"refine {catalog_search.ANN_REFINE})")
        print(f"{n:>9} {label:<44}{pct(ann_lat, 50):>8.1f}{pct(ann_lat, 95):>8.1f}{recall:>10.3f}")
        print(f"{'':>9} (load {load_s:.1f} s; indexes {index_s:.1f} s, ANN {report.ann})")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
