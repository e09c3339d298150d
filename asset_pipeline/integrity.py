"""Consistency checks between the Delta tables and the object store (Dagster asset checks).

After an ingest, each check costs what the run added, not what the catalog holds: the blobs and
ids of this run's versions are looked up one by one. Run alone (from the UI), a check covers
everything: the whole store is listed once. The re-hash sample picks its rows with DuckDB's
reservoir sample (one scan of the hash column, no distinct set of a million hashes)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from asset_pipeline.hashing import hash_stream
from asset_pipeline.sql import connect
from asset_pipeline.sql_literals import literal
from asset_pipeline.store import ObjectStore
from asset_pipeline.tables import Tables


@dataclass
class CheckOutcome:
    passed: bool
    checked: int
    problems: list[str] = field(default_factory=list)


def version_hashes(tables: Tables) -> set[str]:
    con = connect(tables, ["asset_versions"])
    try:
        return {r[0] for r in con.sql("select distinct sha256 from asset_versions").fetchall()}
    finally:
        con.close()


def missing_blobs(tables: Tables, store: ObjectStore, run_id: str | None = None) -> CheckOutcome:
    """Every version's blob must exist.

    With `run_id` (the check after an ingest), only the versions that run committed are looked
    up, one by one — none when it committed none. Without it (the check run alone) everything is
    checked, from one store listing."""
    if run_id is not None:
        got = tables.read("asset_versions", where=f"run_id = {literal(run_id)}", columns=["sha256"])
        mine = set(got["sha256"].to_pylist())
        missing = sorted(sha for sha in mine if not store.exists(sha))
        return CheckOutcome(not missing, len(mine), missing[:50])
    wanted = version_hashes(tables)
    present = set(store.iter_hashes())
    missing = sorted(wanted - present)
    return CheckOutcome(not missing, len(wanted), missing[:50])


def sample_hashes(tables: Tables, sample: int, seed: int | None = None) -> list[str]:
    """Up to `sample` distinct blob hashes, drawn at random from the version rows."""
    con = connect(tables, ["asset_versions"])
    try:
        # Oversample rows (blobs are shared by versions), then keep distinct hashes.
        rows = con.sql(f"select sha256 from asset_versions using sample reservoir({sample * 4} rows) "
                       f"repeatable ({seed if seed is not None else random.randrange(2**31)})").fetchall()
    finally:
        con.close()
    return list(dict.fromkeys(r[0] for r in rows))[:sample]


def rehash_sample(tables: Tables, store: ObjectStore, sample: int = 20, seed: int | None = None) -> CheckOutcome:
    """A random sample of blobs re-hashes to its key (bit rot, a tampered or truncated blob)."""
    picked = sample_hashes(tables, sample, seed)
    bad = []
    for sha in picked:
        try:
            with store.open(sha) as f:
                actual, _ = hash_stream(f)
        except FileNotFoundError:
            bad.append(f"{sha}: missing")
            continue
        if actual != sha:
            bad.append(f"{sha}: content hashes to {actual}")
    return CheckOutcome(not bad, len(picked), bad)


def duplicate_ids(tables: Tables, run_id: str | None = None) -> CheckOutcome:
    """No asset id twice in `assets`, no (asset_id, version) twice in `asset_versions`. With
    `run_id`, only the assets that run wrote versions of (only its writes can add duplicates)."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        if run_id is not None:
            con.execute("create temp table scope as select distinct asset_id as id from asset_versions "
                        f"where run_id = {literal(run_id)}")
            mine = "where id in (select id from scope)"
            theirs = "where asset_id in (select id from scope)"
        else:
            mine = theirs = ""
        dup_assets = con.sql(f"select id from assets {mine} group by id having count(*) > 1").fetchall()
        dup_versions = con.sql(f"select asset_id, version from asset_versions {theirs} group by all "
                               "having count(*) > 1").fetchall()
        checked = con.sql(f"select count(*) from assets {mine}").fetchall()[0][0]
    finally:
        con.close()
    problems = [f"asset id {r[0]} appears more than once" for r in dup_assets]
    problems += [f"asset {r[0]} version {r[1]} appears more than once" for r in dup_versions]
    return CheckOutcome(not problems, checked, problems[:50])
