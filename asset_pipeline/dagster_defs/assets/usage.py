"""Group `usage` (daily partitions): the dbt_usage models through dagster-dbt, and the per-asset
stats copied back into `assets`. Group `usage_intake`: events from log files in the usage inbox."""

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from asset_pipeline.dagster_defs.assets.ingest import markdown_table
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.usage.dbt_project import DBT_ENV, dbt_project
from asset_pipeline.usage.intake import ingest_usage_files
from asset_pipeline.usage.reports import analytics_path, refresh_asset_usage, refresh_sources, report_numbers

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


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """dbt runs as a subprocess that reads its profile from the environment."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, partitions_def=DAILY,
            dagster_dbt_translator=UsageTranslator(), backfill_policy=dg.BackfillPolicy.single_run(),
            name="usage_reports")
def usage_reports(context: dg.AssetExecutionContext, dbt: DbtCliResource, pipeline: PipelineHome):
    """daily_usage, popular_assets, asset_usage_stats, storage_by_project for the partition (or
    backfill range), with their dbt tests as asset checks."""
    home = pipeline.open()
    window = context.partition_key_range
    db = analytics_path(home.settings.home)
    refresh_sources(home.tables, db)
    # Each build's artifacts and logs go to a temporary folder, never into the (packaged) project.
    with _env(ASSET_PIPELINE_ANALYTICS_DB=str(db), **DBT_ENV), tempfile.TemporaryDirectory(prefix="dbt-") as target:
        events = list(dbt.cli(["build", "--vars", json.dumps({"day_from": window.start, "day_to": window.end})],
                              context=context, target_path=Path(target)).stream())
    numbers = report_numbers(db, window.end)
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


# A backfill over a range is one run (one dbt build, one merge); `backfill_policy` on @asset is
# beta in Dagster 1.13, a choice made on purpose, so its BetaWarning is not shown at every import.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `backfill_policy`")

    @dg.asset(group_name=GROUP, partitions_def=DAILY, deps=[dg.AssetKey("asset_usage_stats")], kinds={"deltalake"},
              backfill_policy=dg.BackfillPolicy.single_run())
    def asset_usage_refresh(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
        """download_count and last_accessed copied from asset_usage_stats into `assets` (what the
        retention sweep selects on)."""
        home = pipeline.open()
        updated = refresh_asset_usage(home.tables, analytics_path(home.settings.home))
        return dg.MaterializeResult(metadata={"assets_updated": updated})


@dg.asset(group_name=INTAKE_GROUP, kinds={"deltalake"}, key="usage_events")
def usage_events(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """Events from JSONL/Parquet application logs in ``<home>/usage_inbox``; bad rows and unknown
    asset ids go to `usage_errors` with file, line and field (API events land directly)."""
    home = pipeline.open()
    s = ingest_usage_files(home.tables, home.settings.home / "usage_inbox")
    if s.bad_rows:
        context.log.warning(f"{s.bad_rows} usage rows rejected ({s.unknown_assets} unknown asset ids)")
    return dg.MaterializeResult(metadata={
        "files": len(s.files), "events": s.events, "bad_rows": s.bad_rows, "unknown_assets": s.unknown_assets,
        "errors": markdown_table([{k: e[k] for k in ("source", "line", "field", "reason")} for e in s.errors[:20]]),
    })
