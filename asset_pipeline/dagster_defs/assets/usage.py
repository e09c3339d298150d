"""Group `usage` (daily partitions): the dbt_usage models through dagster-dbt, and the per-asset
stats copied back into `assets`. Group `usage_intake`: events from log files in the usage inbox."""

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from asset_pipeline.dagster_defs.metadata import markdown_table
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.usage.dbt_profile import write_profile
from asset_pipeline.usage.dbt_project import dbt_project
from asset_pipeline.usage.intake import ingest_usage_files
from asset_pipeline.usage.reports import build_file, publish, refresh_asset_usage, report_numbers

GROUP = "usage"
INTAKE_GROUP = "usage_intake"
DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC")
DBT_PROJECT = dbt_project()


class UsageTranslator(DagsterDbtTranslator):
    """dbt sources are the pipeline's own Delta-table assets; every model lands in group `usage`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # Source `pipeline.assets` is the asset `assets`, and so on; a model is keyed by its name.
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return GROUP


@dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, partitions_def=DAILY,
            dagster_dbt_translator=UsageTranslator(), backfill_policy=dg.BackfillPolicy.single_run(),
            name="usage_reports")
def usage_reports(context: dg.AssetExecutionContext, dbt: DbtCliResource, pipeline: PipelineHome):
    """daily_usage, popular_assets, asset_usage_stats, storage_by_project for the partition (or
    backfill range), with their dbt tests as asset checks."""
    home = pipeline.open()
    root = home.root
    window = context.partition_key_range
    # One build at a time per home; analysts read the published copy and never hold this up.
    with home.lock("analytics"), tempfile.TemporaryDirectory(prefix="dbt-") as scratch, \
            build_file(home.tables, root) as database:
        profiles = write_profile(Path(scratch) / "profile", database, root.s3 if root.is_s3 else None)
        runner = DbtCliResource(project_dir=dbt.project_dir, profiles_dir=str(profiles),
                                dbt_executable=dbt.dbt_executable)
        events = list(runner.cli(["build", "--vars", json.dumps({"day_from": window.start, "day_to": window.end})],
                                 context=context, target_path=Path(scratch) / "target").stream())
        publish(root, database)
    numbers = report_numbers(home.tables, root, window.end)
    extra = {
        "daily_usage": {"day": window.end, "events": numbers["events"], "by_action": markdown_table(numbers["daily"])},
        "popular_assets": {"day": window.end, "top": markdown_table(numbers["popular"])},
        "asset_usage_stats": {"assets_with_usage": numbers["assets_with_usage"],
                              "downloads_to_date": numbers["downloads_to_date"]},
        "storage_by_project": numbers["storage"],
    }
    for event in events:
        key = getattr(event, "output_name", None) or getattr(getattr(event, "asset_key", None), "path", [None])[-1]
        if isinstance(event, dg.Output | dg.MaterializeResult) and key in extra:
            yield event.with_metadata({**(event.metadata or {}), **extra[key]})
        else:
            yield event


@dg.asset(group_name=GROUP, partitions_def=DAILY, deps=[dg.AssetKey("asset_usage_stats")], kinds={"deltalake"},
          backfill_policy=dg.BackfillPolicy.single_run())
def asset_usage_refresh(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """download_count and last_accessed copied from asset_usage_stats into `assets` (what the
    retention sweep selects on)."""
    home = pipeline.open()
    updated = refresh_asset_usage(home.tables, home.root)
    return dg.MaterializeResult(metadata={"assets_updated": updated})


@dg.asset(group_name=INTAKE_GROUP, kinds={"deltalake"}, key="usage_events")
def usage_events(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """Events from JSONL/Parquet application logs in ``<home>/usage_inbox``; bad rows and unknown
    asset ids go to `usage_errors` with file, line and field (API events land directly)."""
    home = pipeline.open()
    s = ingest_usage_files(home.tables, home.settings.usage_inbox)
    if s.bad_rows:
        context.log.warning(f"{s.bad_rows} usage rows rejected ({s.unknown_assets} unknown asset ids)")
    return dg.MaterializeResult(metadata={
        "files": len(s.files), "events": s.events, "bad_rows": s.bad_rows, "unknown_assets": s.unknown_assets,
        "errors": markdown_table([{k: e[k] for k in ("source", "line", "field", "reason")} for e in s.errors[:20]]),
    })
