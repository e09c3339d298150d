"""Consistency checks between the Delta tables and the object store (Dagster asset checks)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from asset_pipeline.hashing import hash_stream
from asset_pipeline.sql import connect
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

    With `run_id`, only the versions that run committed are looked up, one by one (a check after
    an ingest costs what the ingest added, not what the catalog holds); a run that committed none
    (the check run alone) checks everything, from one store listing."""
    if run_id is not None:
        got = tables.read("asset_versions", where="run_id = ?", params=[run_id], columns=["sha256"])
        mine = set(got["sha256"].to_pylist())
        if mine:
            missing = sorted(sha for sha in mine if not store.exists(sha))
            return CheckOutcome(not missing, len(mine), missing[:50])
    wanted = version_hashes(tables)
    present = set(store.iter_hashes())
    missing = sorted(wanted - present)
    return CheckOutcome(not missing, len(wanted), missing[:50])


def rehash_sample(tables: Tables, store: ObjectStore, sample: int = 20, seed: int | None = None) -> CheckOutcome:
    """A random sample of blobs re-hashes to its key (bit rot, a tampered or truncated blob)."""
    hashes = sorted(version_hashes(tables))
    picked = random.Random(seed).sample(hashes, min(sample, len(hashes)))
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


def duplicate_ids(tables: Tables) -> CheckOutcome:
    """No asset id twice in `assets`, no (asset_id, version) twice in `asset_versions`."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        dup_assets = con.sql("select id from assets group by id having count(*) > 1").fetchall()
        dup_versions = con.sql("select asset_id, version from asset_versions group by all "
                               "having count(*) > 1").fetchall()
        checked = con.sql("select count(*) from assets").fetchall()[0][0]
    finally:
        con.close()
    problems = [f"asset id {r[0]} appears more than once" for r in dup_assets]
    problems += [f"asset {r[0]} version {r[1]} appears more than once" for r in dup_versions]
    return CheckOutcome(not problems, checked, problems[:50])
