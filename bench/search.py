"""Search benchmark: top-10 latency (p50/p95) and recall@10 through `Catalog.search` itself, beside
the bare LanceDB query it runs, at 100k and 1M synthetic 512-d vectors (clustered, unit length,
like CLIP embeddings) whose rows carry what an embedding job writes (hashes, names, prompts, tags,
times; 5% videos), with an `assets` table of as many rows behind it.

    python bench/search.py                               # 100k and 1M, 5 rounds of 100 queries
    python bench/search.py --sizes 100000 --queries 50 --rounds 3
    python bench/search.py --sizes 1000000 --keep /data/search-bench   # build once, re-run later
    python bench/search.py --nprobes 6 8 12 --refine 2 5  # query settings to compare

Each round sends the same queries through every setting (a different one first each round) and,
for each, every contender in turn (the bare query through LanceDB's sync API with the catalog's
index settings, with and without a status pre-filter, then `Catalog.search(vector=..., k=10)`,
warm, one catalog kept open), prints the round, and medians over the rounds end the table.
Recall@10 is against an exact scan of the same table, leaving out the 2% of assets the `assets`
table says are archived (the bare query cannot know: the catalog re-checks statuses).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

MODEL = "ViT-B-32:search-bench"  # a name only: searches pass vectors, no model is loaded
WORDS = np.array("red blue forest city night rocket sea sunset portrait cat neon film grain castle".split())
START_US = 1_767_225_600_000_000  # 2026-01-01, one output a second after it


def clustered(n: int, dim: int, rng: np.random.Generator, centers: int = 2000) -> np.ndarray:
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        out[lo:hi] = c[rng.integers(0, centers, hi - lo)] + 0.35 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build(home: Path, n: int, dim: int) -> np.ndarray:
    """A home with `n` embedding rows (ANN index built) and `n` asset rows; reused when complete."""
    from asset_pipeline import Settings
    from asset_pipeline.embeddings.vectors import VectorStore, schema
    from asset_pipeline.tables import ASSETS, Tables

    done = home / f"complete-{n}-{dim}.npy"
    if done.exists():
        return np.load(done)
    shutil.rmtree(home, ignore_errors=True)
    rng = np.random.default_rng(n)
    data = clustered(n, dim, rng)
    settings = Settings.from_env(home=home, durable=False)
    vs = VectorStore(settings.lancedb_dir, ann_threshold=n)
    table = vs.open_or_create(parse(MODEL).model_id, dim)
    sch = schema(dim)
    start = time.perf_counter()
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        m = hi - lo
        ids = pa.array([f"a_{i:09d}" for i in range(lo, hi)])
        stamps = pa.array(START_US + np.arange(lo, hi, dtype=np.int64) * 1_000_000, pa.timestamp("us", tz="UTC"))
        table.add(pa.table({  # what an embedding job writes for fresh generator outputs: every column filled
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(data[lo:hi].ravel()), dim),
            "asset_id": ids, "version": pa.array(np.ones(m, np.int32)),
            "sha256": pa.array([hashlib.sha256(b"%d" % i).hexdigest() for i in range(lo, hi)]),
            "name": pa.array([f"images/out-{i:07d}" for i in range(lo, hi)]),
            "type": pa.array(np.where(rng.random(m) < 0.05, "video", "image")),
            "project": pa.array([f"p{i % 10}" for i in range(lo, hi)]),
            "tags": pa.array([list(rng.choice(WORDS, 2)) for _ in range(m)], pa.list_(pa.string())),
            "prompt": pa.array([" ".join(rng.choice(WORDS, 12)) for _ in range(m)]),
            "status": pa.array(["active"] * m), "created_at": stamps,
            "model_id": pa.array([MODEL] * m), "embedded_at": stamps,
        }, schema=sch))
    assets = {f.name: pa.nulls(n, f.type) for f in ASSETS}
    statuses = np.where(np.arange(n) % 50 == 0, "archived", "active")  # 2% archived: left out of results
    assets.update(id=pa.array([f"a_{i:09d}" for i in range(n)]), status=pa.array(statuses),
                  type=pa.array(["image"] * n), current_version=pa.array(np.ones(n, np.int32)))
    Tables(settings.tables_dir).append("assets", pa.table(assets, schema=ASSETS))
    print(f"  loaded {n:,} rows in {time.perf_counter() - start:.0f} s; building indexes ...", flush=True)
    start = time.perf_counter()
    report = vs.maintain(table)
    print(f"  indexes in {time.perf_counter() - start:.0f} s (ANN {report.ann})", flush=True)
    np.save(done, data)
    return data


def parse(model: str):
    from asset_pipeline.embeddings.model import parse_model

    return parse_model(model)


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nprobes", type=int, nargs="+", help="IVF partitions probed (default: the catalog's)")
    ap.add_argument("--refine", type=int, nargs="+", help="refine factors (default: the catalog's)")
    ap.add_argument("--keep", type=Path, help="build the homes here and keep them for later runs")
    args = ap.parse_args()

    from asset_pipeline import Catalog, Settings
    from asset_pipeline.embeddings import search as s

    k = 10
    root = args.keep or Path(tempfile.mkdtemp(prefix="search-bench-"))
    for n in args.sizes:
        home = root / f"home-{n}"
        print(f"{n:,} vectors x {args.dim}: building ... ", flush=True)
        data = build(home, n, args.dim)
        rng = np.random.default_rng(7)
        picks = rng.integers(0, n, args.queries)
        queries = data[picks] + 0.05 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        cat = Catalog(settings=Settings.from_env(home=home, durable=False))
        table = cat.searcher.session.table(parse(MODEL).model_id).sync
        live = cat.searcher.session.status
        truth = []
        for q in queries:  # exact top-10 of active assets: what a perfect search returns
            rows = s.vector_query(table, q, 5 * k).bypass_vector_index().select(["asset_id", "_distance"]).to_arrow()
            ids = rows["asset_id"].to_pylist()
            status = live.of(ids)
            truth.append([i for i in ids if status[i] == "active"][:k])

        def bare(q: np.ndarray, table=table) -> list[str]:  # LanceDB's sync API, the catalog's settings
            return (s.vector_query(table, q, k).where("status = 'active'", prefilter=True)
                    .select(["asset_id", "_distance"]).to_arrow()["asset_id"].to_pylist())

        def unfiltered(q: np.ndarray, table=table) -> list[str]:  # the same, without the status filter
            return s.vector_query(table, q, k).select(["asset_id", "_distance"]).to_arrow()["asset_id"].to_pylist()

        def catalog(q: np.ndarray, cat=cat) -> list[str]:
            return [h["asset_id"] for h in cat.search(vector=q, k=k, model=MODEL)]

        settings = [(nprobes, refine) for nprobes in args.nprobes or [s.ANN_NPROBES]
                    for refine in args.refine or [s.ANN_REFINE]]
        contenders = (("bare query, status prefilter", bare), ("bare query, no filter", unfiltered),
                      ("Catalog.search", catalog))
        per: dict[str, list[tuple[float, float, float]]] = {}
        print(f"\n{n:,} rows; {args.queries} queries a round; every setting and contender in each round")
        print(f"  {'round':<7}{'setting':<22}{'contender':<32}{'p50 ms':>8}{'p95 ms':>8}{'recall@10':>11}")
        for r in range(-1, args.rounds):  # round 0 warms caches and the first status read, unreported
            turn = max(r, 0) % len(settings)  # each setting leads a round in turn: no fixed position
            for nprobes, refine in settings[turn:] + settings[:turn]:
                s.ANN_NPROBES, s.ANN_REFINE = nprobes, refine  # the catalog reads them per query
                setting = f"nprobes {nprobes}, refine {refine}"
                for label, fn in contenders:
                    lat, got = [], []
                    for q in queries if r >= 0 else queries[:10]:
                        t0 = time.perf_counter()
                        got.append(fn(q))
                        lat.append((time.perf_counter() - t0) * 1000)
                    if r < 0:
                        continue
                    recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
                    per.setdefault(f"{setting:<22}{label:<32}", []).append((pct(lat, 50), pct(lat, 95), recall))
                    print(f"  {r + 1:<7}{setting:<22}{label:<32}{pct(lat, 50):>8.2f}{pct(lat, 95):>8.2f}"
                          f"{recall:>11.3f}", flush=True)
        for row, vals in per.items():
            med = [statistics.median(v[i] for v in vals) for i in range(3)]
            print(f"  {'median':<7}{row}{med[0]:>8.2f}{med[1]:>8.2f}{med[2]:>11.3f}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
