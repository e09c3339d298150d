"""What a replicated ingest pays to find the blobs its replica still lacks (`replica.pending_blobs`,
run after every commit) at 1M versions, beside its floor: a bare anti join of every version against
the replica log, which any such check must read. Rounds take turns; every round is printed.

    python bench/pending_blobs.py              # 1M versions, 3 rounds
    python bench/pending_blobs.py --versions 200000 --rounds 5

A synthetic home in a temp folder: assets of one version each (2% archived, 2% deleted and half of
those hard-deleted, 1% of versions purged by a keep-last-N policy), 99% of the blobs already in the
replica log.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

from asset_pipeline.replica import pending_blobs
from asset_pipeline.sql import connect
from asset_pipeline.tables import SCHEMAS, Tables


def rows(name: str, n: int, **columns: pa.Array) -> pa.Table:
    """`n` rows of table `name`: the given columns, nulls elsewhere."""
    data = {f.name: pa.nulls(n, f.type) for f in SCHEMAS[name]}
    data.update(columns)
    return pa.table(data).cast(SCHEMAS[name])


def synthetic_home(tables: Tables, n: int) -> None:
    ids = pa.array([f"a_{i:024x}" for i in range(n)])
    status = ["archived" if i % 50 == 0 else "deleted" if i % 50 == 1 else "active" for i in range(n)]
    tables.append("assets", rows("assets", n, id=ids, status=pa.array(status)))
    tables.append("asset_versions", rows("asset_versions", n, asset_id=ids, version=pa.array([1] * n, pa.int32()),
                                         sha256=pa.array([f"{i:064x}" for i in range(n)])))
    hard, purged = list(range(1, n, 100)), list(range(7, n, 100))
    acted = hard + purged
    tables.append("lifecycle_actions", rows(
        "lifecycle_actions", len(acted), action_id=pa.array([f"x{i}" for i in range(len(acted))]),
        action=pa.array(["hard_delete"] * len(hard) + ["version_purged"] * len(purged)),
        asset_id=pa.array([f"a_{i:024x}" for i in acted]), version=pa.array([1] * len(acted), pa.int32()),
        dry_run=pa.array([False] * len(acted))))
    logged = [f"{i:064x}" for i in range(n) if i % 100 != 3]
    now = pa.array([datetime.now(UTC)] * len(logged), pa.timestamp("us", tz="UTC"))
    tables.append("replica_log", pa.table({"sha256": pa.array(logged), "replicated_at": now})
                  .cast(SCHEMAS["replica_log"]))


def bare_anti_join(tables: Tables) -> list[str]:
    con = connect(tables, ["asset_versions", "replica_log"])
    try:
        return [r[0] for r in con.execute("""select distinct v.sha256 from asset_versions v
                                             anti join replica_log r on r.sha256 = v.sha256
                                             order by 1""").fetchall()]
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pending-blobs-") as tmp:
        tables = Tables(tmp)
        synthetic_home(tables, args.versions)
        contenders: dict[str, Callable[[Tables], list[str]]] = {
            "bare anti join (floor)": bare_anti_join, "pending_blobs": pending_blobs}
        times: dict[str, list[float]] = {label: [] for label in contenders}
        for r in range(args.rounds):
            for label, fn in contenders.items():
                start = time.perf_counter()
                found = fn(tables)
                times[label].append(time.perf_counter() - start)
                print(f"  round {r + 1}  {label:<24}{times[label][-1]:>7.3f} s  {len(found)} pending", flush=True)
        for label, values in times.items():
            print(f"  median   {label:<24}{statistics.median(values):>7.3f} s")


if __name__ == "__main__":
    main()
