"""Dagster code location of the usage reports (group `usage`: dbt through dagster-dbt, daily
partitions, schedule `usage_daily`). Separate from `asset_pipeline.core_definitions` so that only
the processes that build reports import dbt (see `workspace.yaml`)."""

from asset_pipeline.dagster_defs.build import build_definitions

defs = build_definitions(groups=["usage"])
