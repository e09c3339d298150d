"""Group `usage`: the dbt_usage models through dagster-dbt — per-day reports on daily partitions,
whole-table snapshots unpartitioned — and the per-asset stats copied back into `assets`.
Importing this module imports dbt (about 1.4 s): only the usage code location and the CLI's
`report` do."""

import json
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from asset_pipeline.dagster_defs.metadata import markdown_table, report_metadata
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.usage.dbt_profile import write_profile
from asset_pipeline.usage.dbt_project import dbt_project, local_dbt
from asset_pipeline.usage.reports import build_file, publish, refresh_asset_usage, report_numbers

GROUP = "usage"
DBT_PROJECT = dbt_project()
# Per-day reports: one partition per day, a backfill rebuilds its range.
DAILY_MODELS = ("daily_usage", "popular_assets")
# Whole-table snapshots (everything to date): not partitioned, rebuilt by every usage run.
SNAPSHOT_MODELS = ("asset_usage_stats", "storage_by_project")
# The dbt tests of the sources (unique event and asset ids...) run with the snapshots.
SOURCE_TESTS = "source:pipeline"


class UsageTranslator(DagsterDbtTranslator):
    """dbt sources are the pipeline's own Delta-table assets; every model lands in group `usage`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        # Source `pipeline.assets` is the asset `assets`, and so on; a model is keyed by its name.
        return dg.AssetKey(dbt_resource_props["name"])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return GROUP


# Code references: each model links to its .sql file.
TRANSLATOR = UsageTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))


def _dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, pipeline: PipelineHome,
               window: dg.PartitionKeyRange | None, select: list[str] | None = None) -> Iterator:
    """`dbt build` of the selected models into the home's build file, then publish it; the models'
    events carry their row counts and key numbers. `window` None: a snapshot, to date."""
    home = pipeline.open()
    root = home.root
    day = window.end if window else datetime.now(UTC).date().isoformat()
    dbt_vars = {"day_from": window.start if window else day, "day_to": day}
    # One build at a time per home; analysts read the published copy and never hold this up.
    with home.lock("analytics"), tempfile.TemporaryDirectory(prefix="dbt-") as scratch, \
            build_file(home.tables, root) as database:
        profiles = write_profile(Path(scratch) / "profile", database, root.s3 if root.is_s3 else None)
        runner = local_dbt(dbt.project_dir, str(profiles))
        args = ["build", *(["--select", " ".join(select)] if select else []), "--vars", json.dumps(dbt_vars)]
        events = list(runner.cli(args, context=context, target_path=Path(scratch) / "target").stream())
        publish(root, database)
    numbers = report_numbers(home.tables, root, day)
    extra = {
        "daily_usage": {"day": day, "events": numbers["events"], "by_action": markdown_table(numbers["daily"])},
        "popular_assets": {"day": day, "top": markdown_table(numbers["popular"])},
        "asset_usage_stats": {"assets_with_usage": numbers["assets_with_usage"],
                              "downloads_to_date": numbers["downloads_to_date"], "to_day": day},
        "storage_by_project": {**numbers["storage"], "to_day": day},
    }
    for name, shape in numbers["tables"].items():
        if name in extra:
            extra[name].update(report_metadata(*shape))
    for event in events:
        key = getattr(event, "output_name", None) or getattr(getattr(event, "asset_key", None), "path", [None])[-1]
        if isinstance(event, dg.Output | dg.MaterializeResult) and key in extra:
            yield event.with_metadata({**(event.metadata or {}), **extra[key]})
        else:
            yield event


def build_assets(daily: dg.PartitionsDefinition) -> list:
    """The group's assets, the per-day reports on `daily`."""

    @dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, partitions_def=daily,
                select=" ".join(DAILY_MODELS), dagster_dbt_translator=TRANSLATOR,
                backfill_policy=dg.BackfillPolicy.single_run(), name="usage_reports")
    def usage_reports(context: dg.AssetExecutionContext, dbt: DbtCliResource, pipeline: PipelineHome):
        """daily_usage and popular_assets for the partition (or backfill range), with their dbt
        tests as asset checks."""
        yield from _dbt_build(context, dbt, pipeline, context.partition_key_range)

    # Unpartitioned, in a run over a range of days: once (the single-run policy says so).
    @dbt_assets(manifest=DBT_PROJECT.manifest_path, project=DBT_PROJECT, select=" ".join(SNAPSHOT_MODELS),
                dagster_dbt_translator=TRANSLATOR, backfill_policy=dg.BackfillPolicy.single_run(),
                name="usage_snapshots")
    def usage_snapshots(context: dg.AssetExecutionContext, dbt: DbtCliResource, pipeline: PipelineHome):
        """asset_usage_stats and storage_by_project: whole tables as of now, with their dbt tests
        and the sources' tests."""
        whole = {k.to_user_string() for k in context.selected_asset_keys} == set(SNAPSHOT_MODELS)
        yield from _dbt_build(context, dbt, pipeline, None, [*SNAPSHOT_MODELS, SOURCE_TESTS] if whole else None)

    @dg.asset(group_name=GROUP, deps=[dg.AssetKey("asset_usage_stats")], kinds={"deltalake"},
              backfill_policy=dg.BackfillPolicy.single_run())
    def asset_usage_refresh(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
        """download_count and last_accessed copied from asset_usage_stats into `assets` (what the
        retention sweep selects on)."""
        home = pipeline.open()
        updated = refresh_asset_usage(home.tables, home.root)
        return dg.MaterializeResult(metadata={"assets_updated": updated})

    return [usage_reports, usage_snapshots, asset_usage_refresh]


def dbt_resource() -> DbtCliResource:
    return local_dbt(DBT_PROJECT)
