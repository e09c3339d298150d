"""Group `provenance`: model rows (counts and bytes per model and adapter), storage attributed
fairly per project and creator, and model recalls (a job whose selection is its run config)."""

import dagster as dg

from asset_pipeline.dagster_defs.metadata import markdown_table, schema_metadata, table_metadata
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.lifecycle.actions import Lifecycle
from asset_pipeline.lifecycle.policies import load_config
from asset_pipeline.provenance.lineage import model_rows
from asset_pipeline.provenance.recall import recall
from asset_pipeline.storage_attribution import attributed_bytes

GROUP = "provenance"


# Declarative automation: recomputed after an ingest or a sweep changes their inputs (when the
# automation sensor runs).
@dg.asset(group_name=GROUP, deps=["assets", "asset_versions"], kinds={"deltalake"}, metadata=schema_metadata("models"),
          automation_condition=dg.AutomationCondition.eager())
def models(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """One row per model and per LoRA/adapter named in generation parameters: assets (all, and
    not deleted), versions and the bytes of the distinct blobs they produced."""
    home = pipeline.open()
    rows = home.recompute("models", lambda: model_rows(home.tables))
    return dg.MaterializeResult(metadata={
        "models": sum(r["kind"] == "model" for r in rows), "adapters": sum(r["kind"] == "adapter" for r in rows),
        "by_bytes": markdown_table([{k: r[k] for k in ("name", "kind", "assets", "versions", "bytes")}
                                    for r in rows[:20]]),
        **table_metadata(home.tables, "models"),
    })


@dg.asset(group_name=GROUP, deps=["assets", "asset_versions"], kinds={"duckdb"},
          automation_condition=dg.AutomationCondition.eager())
def storage_attribution(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """Stored bytes per project and per creator; a blob shared by n assets counts 1/n for each."""
    home = pipeline.open()
    projects, creators = attributed_bytes(home.tables, "project"), attributed_bytes(home.tables, "created_by")
    return dg.MaterializeResult(metadata={
        "rule": "each blob's bytes split equally among the assets that reference it",
        "stored_bytes": sum(r["attributed_bytes"] for r in projects),
        "by_project": markdown_table(projects), "by_creator": markdown_table(creators),
    })


class RecallConfig(dg.Config):
    model: str
    """The model or adapter (LoRA) whose outputs are taken down, as it appears in `asset_versions`."""
    reason: str
    """Why (a revoked licence, a takedown notice): kept in `recalls`."""
    by: str = "dagster"
    """Who asked."""
    dry_run: bool = False
    """Only list and record what would be taken."""


@dg.asset(group_name=GROUP, deps=["assets", "asset_versions"], kinds={"deltalake"}, key="recalls",
          metadata=schema_metadata("recalls"))
def recalls(context: dg.AssetExecutionContext, config: RecallConfig, pipeline: PipelineHome) -> dg.MaterializeResult:
    """Soft-delete every asset the configured model produced (audited in `lifecycle_actions`,
    reversible until the grace period ends), or list them in a dry run."""
    home = pipeline.open()
    grace = load_config(home.settings.retention_file).grace_period_days
    lifecycle = Lifecycle(home.tables, home.store, home.archive_store(), home.settings.lancedb_dir)
    with home.lock("lifecycle"):  # statuses change: never beside a sweep
        r = recall(lifecycle, config.model, config.reason, config.by, config.dry_run, run_id=context.run_id)
    return dg.MaterializeResult(metadata={
        "recall_id": r.recall_id, "model": r.model, "reason": r.reason, "dry_run": r.dry_run,
        "assets": len(r.taken), "bytes": r.bytes, "already_deleted": len(r.already_deleted),
        "grace_period_days": grace,
        "taken": markdown_table([{k: a[k] for k in ("asset_id", "name", "project", "role", "versions")}
                                 for a in r.taken[:50]]),
        **table_metadata(home.tables, "recalls"),
    })
