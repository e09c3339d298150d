"""Group `ingest`: the inbox → the content-addressed store → `assets` / `asset_versions` /
`ingest_errors`, as one multi-asset.

Scanning, storing and committing run in one step on purpose: what a step produced is already in
the home (blobs, rows), and nothing in flight is handed to another step through an IO manager —
a hand-off keyed by asset would let two concurrent runs read each other's batch.
"""

from collections.abc import Iterator

import dagster as dg

from asset_pipeline import integrity
from asset_pipeline.dagster_defs.metadata import markdown_table
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.ingest import store_items
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


@dg.multi_asset(
    name="ingest",
    group_name=GROUP,
    specs=[
        dg.AssetSpec("assets", deps=[inbox], kinds={"deltalake"},
                     description="One row per logical asset: metadata, status, current version, usage."),
        dg.AssetSpec("asset_versions", deps=[inbox], kinds={"deltalake"},
                     description="Append-only: one row per version with its sha256."),
        dg.AssetSpec("ingest_errors", deps=[inbox], kinds={"deltalake"},
                     description="One row per rejected input, with the reason; the input is quarantined."),
    ],
)
def ingest(context: dg.AssetExecutionContext, config: InboxConfig,
           pipeline: PipelineHome) -> Iterator[dg.MaterializeResult]:
    """Scan the inbox, validate and hash every input, store new content once, then commit versions
    and asset rows (one Delta commit each) and record and quarantine rejects."""
    home = pipeline.open()
    items = home.scan_inbox(config.paths, run_id=context.run_id)
    progress = ProgressLine(len(items), sum(i.size for i in items)) if pipeline.progress else None
    batch = store_items(items, home.store, home.tables, home.settings.workers, progress,
                        home.settings.validation_limits())
    s = home.commit(batch, context.run_id)
    versions_dt, assets_dt = home.tables.open("asset_versions"), home.tables.open("assets")
    replica = {"replica_uploaded": s.replica.uploaded, "replica_checked": s.replica.pending} if s.replica else {}
    yield dg.MaterializeResult(asset_key="asset_versions", metadata={**replica,
        "new_versions": s.new_versions, "unchanged": s.unchanged, "deduplicated": s.deduplicated,
        "bytes_in": s.bytes_in, "bytes_stored": s.bytes_stored, "dedup_ratio": round(s.dedup_ratio, 4),
        "delta_version": versions_dt.version() if versions_dt else -1, "preview": markdown_table(s.preview),
    })
    yield dg.MaterializeResult(asset_key="assets", metadata={
        "new_assets": s.new_assets, "inputs": s.inputs, "rejected": s.rejected, "not_ready": s.not_ready,
        "inbox": pipeline.inbox, "store": pipeline.store,
        "delta_version": assets_dt.version() if assets_dt else -1,
    })
    yield dg.MaterializeResult(asset_key="ingest_errors", metadata={
        "rejected": s.rejected, "errors": markdown_table(s.errors), "quarantine": str(home.settings.quarantine_dir),
    })
    context.log.info(f"ingested {s.new_versions} versions ({s.new_assets} new assets), "
                     f"{s.deduplicated} deduplicated, {s.rejected} rejected")


def _result(outcome: integrity.CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, metadata={
        "checked": outcome.checked, "problems": "\n".join(outcome.problems) or "none"})


@dg.asset_check(asset="asset_versions", blocking=True,
                description="Every version's blob is in the store: this run's versions after an ingest, "
                            "all of them when the check runs alone.")
def blobs_exist(context: dg.AssetCheckExecutionContext, pipeline: PipelineHome) -> dg.AssetCheckResult:
    home = pipeline.open()
    return _result(integrity.missing_blobs(home.tables, home.store, run_id=context.run.run_id))


@dg.asset_check(asset="asset_versions", blocking=True,
                description="A random sample of blobs re-hashes to its key (bit rot, tampering, truncation).")
def sample_rehashes(pipeline: PipelineHome) -> dg.AssetCheckResult:
    home = pipeline.open()
    return _result(integrity.rehash_sample(home.tables, home.store))


@dg.asset_check(asset="assets", blocking=True,
                description="Asset ids and (asset, version) pairs are unique.")
def no_duplicate_ids(pipeline: PipelineHome) -> dg.AssetCheckResult:
    home = pipeline.open()
    return _result(integrity.duplicate_ids(home.tables))


@dg.asset_check(asset="asset_versions",
                description="With a replica (ASSET_PIPELINE_REPLICA): no committed blob waits to be replicated "
                            "(lag) and a sample of logged blobs is really in the replica (gaps).")
def replica_in_sync(pipeline: PipelineHome) -> dg.AssetCheckResult:
    from asset_pipeline.replica import pending_blobs, replica_gaps

    home = pipeline.open()
    if not home.replicated:
        return dg.AssetCheckResult(passed=True, metadata={"replica": "none configured"})
    lag, gaps = len(pending_blobs(home.tables)), replica_gaps(home.store)
    return dg.AssetCheckResult(passed=not lag and not gaps, metadata={
        "replica": home.store.replica.describe(), "lag_blobs": lag, "gaps": len(gaps),
        "examples": "\n".join(gaps[:20]) or "none"})


CHECKS = [blobs_exist, sample_rehashes, no_duplicate_ids, replica_in_sync]
