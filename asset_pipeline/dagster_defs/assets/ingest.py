"""Group `ingest`: the inbox → the content-addressed store → `assets` / `asset_versions` /
`ingest_errors`, as one multi-asset.

Scanning, storing and committing run in one step on purpose: what a step produced is already in
the home (blobs, rows), and nothing in flight is handed to another step through an IO manager —
a hand-off keyed by asset would let two concurrent runs read each other's batch.
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from asset_pipeline import integrity
from asset_pipeline.dagster_defs.metadata import markdown_table, schema_metadata, table_metadata
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.inbox import iter_local
from asset_pipeline.progress import ProgressLine

GROUP = "ingest"

inbox = dg.AssetSpec(
    "inbox", group_name=GROUP, kinds={"folder"},
    description="Generator outputs waiting to be ingested: each file X with its X.meta.json sidecar "
                "(a local folder or an s3:// prefix; ASSET_PIPELINE_INBOX).",
)


class InboxConfig(dg.Config):
    paths: list[str] | None = None
    """Only these inbox paths (the sensor names the new ones); all inputs when unset."""
    verify: bool = False
    """Re-hash every input of a kept inbox instead of trusting the hash cache."""


CHECK_SPECS = [
    dg.AssetCheckSpec("blobs_exist", asset="asset_versions", blocking=True,
                      description="Every version's blob is in the store: this run's versions after an ingest, "
                                  "all of them when the check runs alone."),
    dg.AssetCheckSpec("sample_rehashes", asset="asset_versions", blocking=True,
                      description="A random sample of blobs re-hashes to its key (bit rot, tampering, truncation)."),
    dg.AssetCheckSpec("no_duplicate_ids", asset="assets", blocking=True,
                      description="Asset ids and (asset, version) pairs are unique: of the assets this run wrote "
                                  "after an ingest, of all when the check runs alone."),
    dg.AssetCheckSpec("replica_in_sync", asset="asset_versions",
                      description="With a replica (ASSET_PIPELINE_REPLICA): no committed blob waits to be replicated "
                                  "(lag) and a sample of logged blobs is really in the replica (gaps)."),
]
TABLES = ("asset_versions", "assets", "ingest_errors")


@dg.multi_asset(
    name="ingest",
    group_name=GROUP,
    specs=[
        dg.AssetSpec("assets", deps=[inbox], kinds={"deltalake"}, metadata=schema_metadata("assets"),
                     description="One row per logical asset: metadata, status, current version, usage."),
        dg.AssetSpec("asset_versions", deps=[inbox], kinds={"deltalake"}, metadata=schema_metadata("asset_versions"),
                     description="Append-only: one row per version with its sha256."),
        dg.AssetSpec("ingest_errors", deps=[inbox], kinds={"deltalake"}, metadata=schema_metadata("ingest_errors"),
                     description="One row per rejected input, with the reason; the input is quarantined."),
    ],
    # The checks run in the ingest's own step: a step of its own costs each a handful of events
    # written to the instance (a third of an empty run's time). Selected alone (from the UI),
    # a check runs without an ingest and covers everything.
    check_specs=CHECK_SPECS,
    can_subset=True,
)
def ingest(context: dg.AssetExecutionContext, config: InboxConfig,
           pipeline: PipelineHome) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Scan the inbox, validate and hash every input, store new content once, then commit versions
    and asset rows (one Delta commit each per batch of inputs), record and quarantine rejects, and
    remove committed inputs from a consumed inbox; then the blocking checks."""
    home = pipeline.open()
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    run_id = None
    if selected:  # the three tables are written together
        run_id = context.run_id
        yield from _ingest(context, config, pipeline, home, selected)
    checks = {k.name for k in context.selected_asset_check_keys}
    if "blobs_exist" in checks:
        yield _result("asset_versions", "blobs_exist", integrity.missing_blobs(home.tables, home.store, run_id=run_id))
    if "sample_rehashes" in checks:
        yield _result("asset_versions", "sample_rehashes", integrity.rehash_sample(home.tables, home.store))
    if "no_duplicate_ids" in checks:
        yield _result("assets", "no_duplicate_ids", integrity.duplicate_ids(home.tables, run_id=run_id))
    if "replica_in_sync" in checks:
        yield _replica_in_sync(home)


def _replica_in_sync(home) -> dg.AssetCheckResult:
    if not home.replicated:
        return dg.AssetCheckResult(asset_key="asset_versions", check_name="replica_in_sync", passed=True,
                                   metadata={"replica": "none configured"})
    from asset_pipeline.replica import pending_blobs, replica_gaps

    lag, gaps = len(pending_blobs(home.tables)), replica_gaps(home.store)
    return dg.AssetCheckResult(asset_key="asset_versions", check_name="replica_in_sync", passed=not lag and not gaps,
                               metadata={"replica": home.store.replica.describe(), "lag_blobs": lag,
                                         "gaps": len(gaps), "examples": "\n".join(gaps[:20]) or "none"})


def _ingest(context: dg.AssetExecutionContext, config: InboxConfig, pipeline: PipelineHome, home,
            selected: set[str]) -> Iterator[dg.MaterializeResult]:
    progress = _progress_line(home, config.paths) if pipeline.progress else None
    s = home.ingest(config.paths, progress, run_id=context.run_id, verify=config.verify)
    if progress:
        progress.finish()
    replica = {"replica_uploaded": s.replica.uploaded, "replica_checked": s.replica.pending} if s.replica else {}
    results = {
        "asset_versions": {**replica,
            "new_versions": s.new_versions, "unchanged": s.unchanged, "deduplicated": s.deduplicated,
            "bytes_in": s.bytes_in, "bytes_stored": s.bytes_stored, "dedup_ratio": round(s.dedup_ratio, 4),
            "preview": markdown_table(s.preview, pictures={"thumbnail": ("asset_id", "version")}, home=home)},
        "assets": {
            "new_assets": s.new_assets, "inputs": s.inputs, "rejected": s.rejected, "not_ready": s.not_ready,
            "inbox": pipeline.inbox, "store": pipeline.store, "inbox_mode": pipeline.inbox_mode,
            "consumed": s.consumed, "hashed": s.hashed, "bytes_copied": s.bytes_copied, "batches": s.batches},
        "ingest_errors": {
            "rejected": s.rejected, "errors": markdown_table(s.errors),
            "quarantine": str(home.root / "quarantine") if home.settings.consumes_inbox else "none (kept inbox)"},
    }
    for key in TABLES:
        if key in selected:
            # Row count (from the Delta log, no scan), columns, version and place of each table.
            yield dg.MaterializeResult(asset_key=key, metadata={**results[key], **table_metadata(home.tables, key)})
    context.log.info(f"ingested {s.new_versions} versions ({s.new_assets} new assets), "
                     f"{s.deduplicated} deduplicated, {s.rejected} rejected")


def _progress_line(home, paths: list[str] | None) -> ProgressLine:
    """A terminal's progress line with totals: the inbox is walked once more to count them (a
    listing costs milliseconds per thousand files; nothing of it is kept)."""
    if home.settings.inbox_is_s3:
        return ProgressLine(len(paths) if paths is not None else None)
    files = size = 0
    for item in iter_local(Path(home.settings.inbox), paths):
        files, size = files + 1, size + item.size
    return ProgressLine(files, size)


def _result(asset: str, check: str, outcome: integrity.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset, check_name=check, passed=outcome.passed, metadata={
        "checked": outcome.checked, "problems": "\n".join(outcome.problems) or "none"})
