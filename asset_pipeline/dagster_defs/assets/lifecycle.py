"""Group `lifecycle`: the retention sweep on daily partitions, with its audit table and its
blocking blob check, and table upkeep (not partitioned: it acts on the tables as they are)."""

from datetime import timedelta

import dagster as dg

from asset_pipeline.dagster_defs.metadata import markdown_table, schema_metadata, table_metadata
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.failpoints import failpoint
from asset_pipeline.lifecycle.actions import Lifecycle, blob_report, check_run, sweep
from asset_pipeline.lifecycle.policies import load_config, parse_config
from asset_pipeline.lifecycle.upkeep import upkeep

GROUP = "lifecycle"


class SweepConfig(dg.Config):
    policies: dict | None = None
    """Retention config (same shape as retention.yaml); unset: <home>/retention.yaml."""
    dry_run: bool | None = None
    """Overrides the config's dry_run: report what would happen, touch nothing."""


def _lifecycle(pipeline: PipelineHome, storage_class: str | None = None, blob_grace_hours: float = 24.0) -> Lifecycle:
    home = pipeline.open()
    return Lifecycle(home.tables, home.store, home.archive_store(storage_class), home.settings.lancedb_dir,
                     blob_grace=timedelta(hours=blob_grace_hours))


@dg.asset_check(asset="lifecycle_actions", blocking=True,
                description="No version without its blob (an error: it blocks what follows the sweep) and no "
                            "orphan blob older than the grace period (a warning: the next sweeps collect it). "
                            "Runs after each sweep; select it alone to check the store at any time.")
def blob_references(pipeline: PipelineHome) -> dg.AssetCheckResult:
    grace = load_config(pipeline.settings().retention_file).blob_grace_hours
    report = blob_report(_lifecycle(pipeline, blob_grace_hours=grace))
    problems = report["orphans"] + report["missing"]
    severity = dg.AssetCheckSeverity.ERROR if report["missing"] else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(passed=not problems, severity=severity, metadata={
        "orphans": len(report["orphans"]), "missing": len(report["missing"]),
        "examples": "\n".join(problems[:20]) or "none"})


def build_assets(daily: dg.PartitionsDefinition) -> list:
    """The group's assets and checks, the sweep on `daily`."""

    @dg.asset(group_name=GROUP, partitions_def=daily, deps=["assets", "asset_usage_refresh"], kinds={"deltalake"},
              key="lifecycle_actions", backfill_policy=dg.BackfillPolicy.single_run(),
              metadata=schema_metadata("lifecycle_actions"))
    def retention_sweep(context: dg.AssetExecutionContext, config: SweepConfig, pipeline: PipelineHome):
        """Apply the retention policies as of the end of each partition's day; audit every action.

        One sweep at a time: a backfill over a range runs as one run that sweeps its days in order,
        and the sweep holds the home's lifecycle lock (any caller, any run launcher). Before any day
        changes anything, the run's deletions over all its days are checked against the allowed share
        (lifecycle/guard.py): too many fail the run with the numbers. A new policy's days are dry runs
        (its preview) until a later run."""
        settings = pipeline.settings()
        retention = (parse_config(config.policies, "run config policies") if config.policies is not None
                     else load_config(settings.retention_file))  # invalid policies fail here, before any change
        dry_run = retention.dry_run if config.dry_run is None else config.dry_run
        lifecycle = _lifecycle(pipeline, retention.archive_storage_class, retention.blob_grace_hours)
        days = sorted(context.partition_keys)
        with pipeline.open().lock("lifecycle"):
            failpoint("sweep-locked")
            rails = retention.guard_rails
            guard = None if dry_run else check_run(lifecycle, retention.policies, retention.grace_period_days, days,
                                                   context.run_id, rails)
            summaries = [sweep(lifecycle, retention.policies, retention.grace_period_days, day, context.run_id, dry_run,
                               rails) for day in days]
        totals = lifecycle.tables.read("lifecycle_actions", where="partition_key in (select unnest(?))", params=[days])
        selected: dict[str, int] = {}
        for s in summaries:
            for name, n in s.selected.items():
                selected[name] = selected.get(name, 0) + n
        yield dg.MaterializeResult(metadata={
            "dry_run": dry_run, "days": len(days), "policies": len(retention.policies),
            "archived": sum(s.archived for s in summaries), "soft_deleted": sum(s.deleted for s in summaries),
            "hard_deleted": sum(s.hard_deleted for s in summaries),
            "versions_purged": sum(s.versions_purged for s in summaries),
            "bytes_moved_to_archive": sum(s.bytes_moved for s in summaries),
            "bytes_freed": sum(s.bytes_freed for s in summaries),
            "audit_rows_this_run": sum(s.audit_rows for s in summaries), "audit_rows_for_partitions": totals.num_rows,
            "selected": markdown_table([{"policy": k, "assets": v} for k, v in selected.items()]),
            "problems": "\n".join(p for s in summaries for p in s.problems) or "none",
            "previewed_policies": ", ".join(sorted({n for s in summaries for n in s.previewed})) or "none",
            "mass_delete_guard": guard or next((s.mass_delete for s in summaries if s.mass_delete), "within the limit"),
            **table_metadata(lifecycle.tables, "lifecycle_actions"),
        })

    @dg.asset(group_name=GROUP, deps=["lifecycle_actions"], kinds={"deltalake", "lancedb"},
              backfill_policy=dg.BackfillPolicy.single_run())  # once in a run over a range of days
    def table_upkeep(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
        """Delta optimize/vacuum and LanceDB compaction, so small files do not pile up."""
        home = pipeline.open()
        reports = upkeep(home.tables, home.settings.lancedb_dir, stores=(home.store, home.archive_store()))
        return dg.MaterializeResult(metadata={
            "tables": len(reports), "files_vacuumed": sum(r.vacuumed for r in reports),
            "files": markdown_table([{"table": r.table, "before": r.files_before, "after": r.files_after}
                                     for r in reports if not r.table.startswith("lancedb/")]),
        })

    return [retention_sweep, table_upkeep, blob_references]
