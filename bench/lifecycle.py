"""Retention sweep over 1M asset rows, metadata only: the project's `sweep()` (policy selection,
audit rows, the status merge into the 1M-row `assets` table, the hard-delete pass, and the
decision of which blob belongs in which store; the stores themselves are not walked) beside its
floor: DuckDB selecting the same assets and one rewrite of `assets` with the new statuses (what
any Delta-based sweep must at least do). Moving blobs costs what copying them costs: see
bench/ingest.py.

    python bench/lifecycle.py                       # 1M assets, 3 interleaved rounds
    python bench/lifecycle.py --assets 100000 --rounds 5

Each round runs both on a fresh copy of the same tables (copied outside the timing) and prints
its numbers, with the sweep's time split by step; medians end the table.

The first sweep is yesterday's partition (UTC) and the catalog is dated relative to it: a soft
delete is stamped with the wall clock, so with a 0-day grace period the first sweep must end
before the run (it then only soft-deletes) and the second after it (it hard-deletes them). Fixed
dates made the hard-delete pass find nothing once they had passed.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

# Guard rails as an operator who means it would set them: a 0-day grace period, deletes above the
# default 10% share allowed, policies acting at once instead of a first preview run.
POLICIES = {"grace_period_days": 0, "allow_short_grace_period": True, "max_delete_share": 0.5,
            "preview_new_policies": False, "blob_grace_hours": 0, "policies": [
    {"name": "stale-drafts", "action": "delete", "select": {"tags": ["draft"], "unused_for_days": 180}},
    {"name": "old-models", "action": "delete", "select": {"type": "model", "older_than_days": 540}},
    {"name": "unused-video", "action": "delete", "select": {"type": "video", "unused_for_days": 365,
                                                             "project": ["p1", "p2", "p3"]}},
]}


def build(tables, n: int, day: date) -> None:
    from asset_pipeline.tables import ASSET_VERSIONS, ASSETS

    rng = np.random.default_rng(0)
    now = datetime(day.year, day.month, day.day, tzinfo=UTC)
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
    tables.ensure_all()


def timed_lifecycle(times: dict[str, float]):
    """The project's Lifecycle, with the time of each step it takes added to `times`. A step's
    time excludes the timed steps it calls (the hard-delete pass's audit merge is counted once, as
    an audit merge), so the steps and "the rest" add up to the total."""
    from asset_pipeline.lifecycle.actions import Lifecycle

    inner: list[float] = []  # per running timed step: time spent in the timed steps it called

    def timing(label: str, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                times[label] += spent - inner.pop()
                if inner:
                    inner[-1] += spent
        return wrapper

    def placement_only(self, run_id: str = "reconcile", only=None) -> list[dict]:
        """Metadata only: the placement is decided and compared with listings of stores holding
        every referenced blob hot, where ingest put them (as Arrow arrays: the walk of the stores,
        and the strings it yields, are not timed); nothing is copied, marked or collected —
        copying, listing and collecting cost what bench/ingest.py measures."""
        placement = self._placement(only)
        placement.mismatches({"hot": placement.table["sha256"], "archive": pa.array([], pa.string())})
        self.problems = []
        return []

    class Timed(Lifecycle):
        select = timing("select (3 policies)", Lifecycle.select)
        _rows = timing("audit rows (DuckDB)", Lifecycle._rows)
        _audit = timing("audit merges into lifecycle_actions", Lifecycle._audit)
        _set_status = timing("status merge into assets", Lifecycle._set_status)
        hard_delete_expired = timing("hard-delete pass (refcounts)", Lifecycle.hard_delete_expired)
        purge_pruned_versions = timing("pruned-version pass", Lifecycle.purge_pruned_versions)
        reconcile_blobs = timing("blob placement: which hashes go where", placement_only)

    return Timed


def run_sweep(root: Path, day: date) -> tuple[float, dict[str, float], str]:
    from asset_pipeline.lifecycle.actions import sweep
    from asset_pipeline.lifecycle.policies import parse_config
    from asset_pipeline.store import LocalObjectStore
    from asset_pipeline.tables import Tables

    config = parse_config(POLICIES)
    steps: dict[str, float] = defaultdict(float)
    lifecycle = timed_lifecycle(steps)(Tables(root / "tables"), LocalObjectStore(root), LocalObjectStore(
        root / "archive"), blob_grace=timedelta(0))
    start = time.perf_counter()
    first = sweep(lifecycle, config.policies, config.grace_period_days, day.isoformat(), "bench",
                  rails=config.guard_rails)
    # the next day's sweep hard-deletes what this one soft-deleted (grace period 0). The soft
    # deletes carry the wall clock, so a round that runs past midnight UTC sweeps the day they
    # fell on: with the day after `day`, its hard-delete pass would find nothing expired yet.
    next_day = max(day + timedelta(days=1), datetime.now(UTC).date())
    second = sweep(lifecycle, config.policies, config.grace_period_days, next_day.isoformat(), "bench-2",
                   rails=config.guard_rails)
    total = time.perf_counter() - start
    steps["planning and the mass-delete guard (the rest)"] = total - sum(steps.values())
    note = f"{sum(first.selected.values()):,} assets soft-deleted, {second.hard_deleted:,} hard-deleted"
    return total, dict(steps), note


def run_floor(root: Path, day: date) -> tuple[float, dict[str, float], str]:
    """DuckDB selects the same assets and `assets` is rewritten once with their new status."""
    from deltalake import write_deltalake

    from asset_pipeline.lifecycle.policies import parse_config
    from asset_pipeline.sql import connect
    from asset_pipeline.tables import Tables

    tables = Tables(root / "tables")
    config = parse_config(POLICIES)
    as_of = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    start = time.perf_counter()
    con = connect(tables, ["assets"])
    clauses, params = zip(*(p.where(as_of) for p in config.policies))
    where = " or ".join(f"({c})" for c in clauses)
    updated = con.execute(f"select * replace (case when {where} then 'deleted' else status end as status) "
                          "from assets", [x for p in params for x in p]).to_arrow_table()
    con.close()
    write_deltalake(tables.uri("assets"), tables.conform("assets", updated), mode="overwrite")
    return time.perf_counter() - start, {}, "select + one overwrite"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from asset_pipeline.tables import Tables

    day = datetime.now(UTC).date() - timedelta(days=1)  # once: every round sweeps the same days
    work = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    try:
        start = time.perf_counter()
        build(Tables(work / "base" / "tables"), args.assets, day)
        print(f"{args.assets:,} assets + versions written in {time.perf_counter() - start:.1f} s")
        contenders = (("floor: DuckDB select + one rewrite of assets", run_floor),
                      ("asset-pipeline sweep (+ next day's hard delete)", run_sweep))
        totals: dict[str, list[float]] = defaultdict(list)
        steps: dict[str, list[float]] = defaultdict(list)
        print(f"\n{'round':<7}{'what':<50}{'seconds':>9}  note")
        for r in range(args.rounds):
            for label, fn in contenders:
                run = work / f"run-{r}-{len(totals[label])}-{fn.__name__}"
                shutil.copytree(work / "base", run)
                seconds, parts, note = fn(run, day)
                totals[label].append(seconds)
                print(f"{r + 1:<7}{label:<50}{seconds:>9.2f}  {note}", flush=True)
                for step, s in parts.items():
                    steps[step].append(s)
                    print(f"{'':<9}{step:<48}{s:>9.2f}")
                shutil.rmtree(run, ignore_errors=True)
        print()
        for label in totals:
            print(f"{'median':<7}{label:<50}{statistics.median(totals[label]):>9.2f}")
        for step, values in steps.items():
            print(f"{'':<9}{step:<48}{statistics.median(values):>9.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
