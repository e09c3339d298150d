"""Group `lifecycle` (daily partitions): the retention sweep, with its audit table, and upkeep."""

import dagster as dg

from asset_pipeline.dagster_defs.assets.ingest import markdown_table
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.lifecycle.actions import Lifecycle, blob_report, sweep
from asset_pipeline.lifecycle.policies import load_config, parse_config
from asset_pipeline.lifecycle.upkeep import upkeep

GROUP = "lifecycle"
DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")


class SweepConfig(dg.Config):
    policies: dict | None = None
    """Retention config (same shape as retention.yaml); unset: <home>/retention.yaml."""
    dry_run: bool | None = None
    """Overrides the config's dry_run: report what would happen, touch nothing."""


def _lifecycle(pipeline: PipelineHome, storage_class: str | None = None) -> Lifecycle:
    home = pipeline.open()
    return Lifecycle(home.tables, home.store, home.archive_store(storage_class), home.settings.lancedb_dir)


@dg.asset(group_name=GROUP, partitions_def=DAILY, deps=["assets", "asset_usage_refresh"], kinds={"deltalake"},
          key="lifecycle_actions",
          check_specs=[dg.AssetCheckSpec("blob_references", asset="lifecycle_actions",
                                         description="no orphan blobs, no version without its blob")])
def retention_sweep(context: dg.AssetExecutionContext, config: SweepConfig, pipeline: PipelineHome):
    """Apply the retention policies as of the end of the partition's day; audit every action.
    A sweep that would delete more than the allowed share fails here, before any change, with the
    numbers (see lifecycle/guard.py); a policy's first sweep is a dry run (its preview)."""
    settings = pipeline.settings()
    retention = (parse_config(config.policies, "run config policies") if config.policies is not None
                 else load_config(settings.retention_file))  # invalid policies fail here, before any change
    dry_run = retention.dry_run if config.dry_run is None else config.dry_run
    lifecycle = _lifecycle(pipeline, retention.archive_storage_class)
    s = sweep(lifecycle, retention.policies, retention.grace_period_days, context.partition_key, context.run_id,
              dry_run, retention.guard_rails)
    totals = lifecycle.tables.read("lifecycle_actions", where="partition_key = ?", params=[context.partition_key])
    yield dg.MaterializeResult(metadata={
        "dry_run": dry_run, "policies": len(retention.policies), "archived": s.archived, "soft_deleted": s.deleted,
        "hard_deleted": s.hard_deleted, "bytes_moved_to_archive": s.bytes_moved, "bytes_freed": s.bytes_freed,
        "audit_rows_this_run": s.audit_rows, "audit_rows_for_partition": totals.num_rows,
        "selected": markdown_table([{"policy": k, "assets": v} for k, v in s.selected.items()]),
        "problems": "\n".join(s.problems) or "none",
        "previewed_policies": ", ".join(s.previewed) or "none",
        "mass_delete_guard": s.mass_delete or "within the limit",
    })
    report = blob_report(lifecycle)
    yield dg.AssetCheckResult(check_name="blob_references", passed=not report["orphans"] and not report["missing"],
                              metadata={"orphans": len(report["orphans"]), "missing": len(report["missing"]),
                                        "examples": "\n".join((report["orphans"] + report["missing"])[:20]) or "none"})


@dg.asset(group_name=GROUP, partitions_def=DAILY, deps=["lifecycle_actions"], kinds={"deltalake", "lancedb"})
def table_upkeep(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """Delta optimize/vacuum and LanceDB compaction, so small files do not pile up."""
    home = pipeline.open()
    reports = upkeep(home.tables, home.settings.lancedb_dir)
    return dg.MaterializeResult(metadata={
        "tables": len(reports), "files_vacuumed": sum(r.vacuumed for r in reports),
        "files": markdown_table([{"table": r.table, "before": r.files_before, "after": r.files_after}
                                 for r in reports if not r.table.startswith("lancedb/")]),
    })
