"""Group `collections`: assets and bytes per collection, for the UI and for SQL."""

import dagster as dg

from asset_pipeline.collections import collections_of
from asset_pipeline.dagster_defs.metadata import markdown_table, schema_metadata, table_metadata
from asset_pipeline.dagster_defs.resources import PipelineHome

GROUP = "collections"


# Declarative automation: recomputed after `assets` changes (when the automation sensor runs).
@dg.asset(group_name=GROUP, deps=["assets"], kinds={"deltalake"}, metadata=schema_metadata("collection_stats"),
          automation_condition=dg.AutomationCondition.eager())
def collection_stats(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """One row per collection: assets (live and all), bytes of live assets, number of shares."""
    home = pipeline.open()
    rows = home.recompute("collection_stats", collections_of(home).stats)
    return dg.MaterializeResult(metadata={
        "collections": len(rows), "bytes": sum(r["bytes"] for r in rows),
        "largest": markdown_table([{k: r[k] for k in ("name", "owner", "live_assets", "bytes", "shares")}
                                   for r in sorted(rows, key=lambda r: -r["bytes"])[:20]]),
        **table_metadata(home.tables, "collection_stats"),
    })
