"""Group `ingest`: inbox → stored objects → the `assets` / `asset_versions` / `ingest_errors` tables."""


from collections.abc import Iterator

import dagster as dg

from asset_pipeline import integrity
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.inbox import InboxItem
from asset_pipeline.ingest import StoredBatch, store_items
from asset_pipeline.progress import ProgressLine, human_bytes

GROUP = "ingest"


class InboxConfig(dg.Config):
    paths: list[str] | None = None
    """Only these inbox paths (the sensor names the new ones); all inputs when unset."""


def markdown_table(rows: list[dict]) -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md("_none_")
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return dg.MetadataValue.md("\n".join(lines))


@dg.asset(group_name=GROUP, kinds={"python"})
def inbox_files(context: dg.AssetExecutionContext, config: InboxConfig, pipeline: PipelineHome) -> list[InboxItem]:
    """Generator outputs waiting in the inbox, paired with their sidecars."""
    home = pipeline.open()
    items = home.scan_inbox(config.paths, run_id=context.run_id)
    context.add_output_metadata({
        "inbox": pipeline.inbox, "inputs": len(items), "bytes": sum(i.size for i in items),
        "without_sidecar": sum(1 for i in items if i.sidecar is None),
    })
    return items


@dg.asset(group_name=GROUP, kinds={"python"})
def stored_objects(context: dg.AssetExecutionContext, inbox_files: list[InboxItem],
                   pipeline: PipelineHome) -> StoredBatch:
    """Validated inputs, hashed (sha256) and written to the content-addressed store."""
    home = pipeline.open()
    progress = ProgressLine(len(inbox_files), sum(i.size for i in inbox_files)) if pipeline.progress else None
    batch = store_items(inbox_files, home.store, home.tables, home.settings.workers, progress,
                        home.settings.validation_limits())
    written = sum(1 for a in batch.accepted if a.written)
    context.add_output_metadata({
        "accepted": len(batch.accepted), "new_objects": written,
        "deduplicated": len(batch.accepted) - written, "rejected": len(batch.rejected),
        "not_ready": len(batch.not_ready), "bytes_in": batch.bytes_in, "bytes_stored": batch.bytes_written,
        "bytes_stored_human": human_bytes(batch.bytes_written), "store": pipeline.store,
    })
    return batch


CHECKS = [
    dg.AssetCheckSpec("blobs_exist", asset="asset_versions", description="every version's blob is in the store"),
    dg.AssetCheckSpec("sample_rehashes", asset="asset_versions", description="sampled blobs re-hash to their key"),
    dg.AssetCheckSpec("no_duplicate_ids", asset="assets", description="asset ids and (asset, version) are unique"),
]


def check_results(home) -> list[dg.AssetCheckResult]:
    results = []
    for spec, outcome in (
        (CHECKS[0], integrity.missing_blobs(home.tables, home.store)),
        (CHECKS[1], integrity.rehash_sample(home.tables, home.store)),
        (CHECKS[2], integrity.duplicate_ids(home.tables)),
    ):
        results.append(dg.AssetCheckResult(
            asset_key=spec.asset_key, check_name=spec.name, passed=outcome.passed,
            metadata={"checked": outcome.checked, "problems": "\n".join(outcome.problems) or "none"},
        ))
    return results


@dg.multi_asset(
    group_name=GROUP,
    specs=[
        dg.AssetSpec("assets", deps=["stored_objects"], kinds={"deltalake"},
                     description="One row per logical asset: metadata, status, current version, usage."),
        dg.AssetSpec("asset_versions", deps=["stored_objects"], kinds={"deltalake"},
                     description="Append-only: one row per version with its sha256."),
        dg.AssetSpec("ingest_errors", deps=["stored_objects"], kinds={"deltalake"},
                     description="One row per rejected input, with the reason; the input is quarantined."),
    ],
    check_specs=CHECKS,
)
def catalog_tables(context: dg.AssetExecutionContext, stored_objects: StoredBatch,
                   pipeline: PipelineHome) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Commit versions and asset rows (one Delta commit each), record and quarantine rejects."""
    home = pipeline.open()
    s = home.commit(stored_objects, context.run_id)
    versions_dt, assets_dt = home.tables.open("asset_versions"), home.tables.open("assets")
    yield dg.MaterializeResult(asset_key="asset_versions", metadata={
        "new_versions": s.new_versions, "unchanged": s.unchanged, "deduplicated": s.deduplicated,
        "bytes_in": s.bytes_in, "bytes_stored": s.bytes_stored, "dedup_ratio": round(s.dedup_ratio, 4),
        "delta_version": versions_dt.version() if versions_dt else -1, "preview": markdown_table(s.preview),
    })
    yield dg.MaterializeResult(asset_key="assets", metadata={
        "new_assets": s.new_assets, "inputs": s.inputs, "rejected": s.rejected,
        "delta_version": assets_dt.version() if assets_dt else -1,
    })
    yield dg.MaterializeResult(asset_key="ingest_errors", metadata={
        "rejected": s.rejected, "errors": markdown_table(s.errors), "quarantine": str(home.settings.quarantine_dir),
    })
    context.log.info(f"ingested {s.new_versions} versions ({s.new_assets} new assets), "
                     f"{s.deduplicated} deduplicated, {s.rejected} rejected")
    yield from check_results(home)
