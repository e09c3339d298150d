"""Usage benchmark: 10M events over 90 days in the day-partitioned `usage_events` Delta table;
times the event-ingest rate (batched Delta write, and the validated API buffer), the daily
report and the popular-assets query through DuckDB — the same SQL the dbt models run.

    python bench/usage.py                       # 10M events
    python bench/usage.py --events 1000000      # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa


def generate(n: int, days: int, assets: int, users: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 8, 27, tzinfo=UTC)
    seconds = np.sort(rng.integers(0, days * 86400, n))
    at = pa.array((np.datetime64(start.replace(tzinfo=None), "us") + seconds.astype("timedelta64[s]")),
                  pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    day = pa.array((np.datetime64(start.date(), "D") + (seconds // 86400).astype("timedelta64[D]")), pa.date32())
    popular = rng.zipf(1.3, n) % assets  # a few assets get most of the traffic, as in real use
    actions = np.array(["view", "download", "embed", "transform"])[rng.choice(4, n, p=[0.6, 0.3, 0.05, 0.05])]
    return pa.table({
        "event_id": pa.array([f"e{i:09d}" for i in range(n)]),
        "asset_id": pa.array(np.char.add("a_", popular.astype(str))),
        "version": pa.nulls(n, pa.int32()),
        "action": pa.array(actions),
        "user_id": pa.array(np.char.add("u", rng.integers(0, users, n).astype(str))),
        "context": pa.nulls(n, pa.string()), "collection_id": pa.nulls(n, pa.string()),
        "at": at, "day": day, "source": pa.repeat("bench", n),
        "recorded_at": pa.repeat(pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), n),
    })


def median_time(con: duckdb.DuckDBPyConnection, sql: str, params: list, runs: int = 3) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = len(con.execute(sql, params).fetchall())
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--assets", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20_000)
    args = ap.parse_args()

    from asset_pipeline.tables import Tables
    from asset_pipeline.usage.events import UsageBuffer

    work = Path(tempfile.mkdtemp(prefix="usage-bench-"))
    tables = Tables(work / "tables")
    print(f"generating {args.events:,} events over {args.days} days ({args.assets:,} assets, {args.users:,} users)")
    data = generate(args.events, args.days, args.assets, args.users)

    start = time.perf_counter()
    tables.append("usage_events", data)
    write_s = time.perf_counter() - start
    files = len(tables.files("usage_events"))

    # The API path: validated, buffered events, one commit per 10,000.
    ids = [f"a_{i}" for i in range(1000)]
    buffer = UsageBuffer(tables)
    buffer._known = set(ids)  # the asset lookup is cached after its first miss; skip the catalog here
    n_api = 100_000
    start = time.perf_counter()
    for i in range(n_api):
        buffer.record(ids[i % 1000], "download", f"u{i % 50}", at=datetime(2026, 11, 24, tzinfo=UTC))
    buffer.flush()
    api_s = time.perf_counter() - start

    con = duckdb.connect()
    con.execute(f"create view usage_events as select * from {tables.scan_sql('usage_events')}")
    last = (datetime(2026, 8, 27) + timedelta(days=args.days - 1)).date().isoformat()
    daily_one = """select day, action, count(*) events, count(distinct asset_id) distinct_assets,
                          count(distinct user_id) distinct_users
                   from usage_events where day = ?::date group by all"""
    daily_all = """select day, action, count(*) events, count(distinct asset_id) distinct_assets,
                          count(distinct user_id) distinct_users
                   from usage_events group by all"""
    popular = """select asset_id, count(*) filter (where action = 'download') downloads, count(*) events,
                        count(distinct user_id) users
                 from usage_events where day between ?::date - 29 and ?::date
                 group by asset_id order by downloads desc, events desc limit 10"""
    print(f"\n{'what':<62}{'seconds':>9}{'rate / rows':>16}")
    print(f"{f'write {args.events:,} events, one batched Delta commit ({files} files)':<62}{write_s:>9.2f}"
          f"{args.events / write_s:>12,.0f} ev/s")
    print(f"{'record_usage API: validate + buffer + flush, 100k events':<62}{api_s:>9.2f}{n_api / api_s:>12,.0f} ev/s")
    for label, sql, params in (
        ("daily report, one day (a partition run)", daily_one, [last]),
        ("daily report, all days (a full rebuild)", daily_all, []),
        ("popular assets, 30-day window ending on a day", popular, [last, last]),
        ("top-10 downloaded over all days", popular.replace("where day between ?::date - 29 and ?::date", ""), []),
    ):
        seconds, rows = median_time(con, sql, params)
        print(f"{label:<62}{seconds:>9.3f}{rows:>11,} rows")
    con.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
