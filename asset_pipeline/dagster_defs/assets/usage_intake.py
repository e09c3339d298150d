"""Group `usage_intake`: usage events from application log files in ``<home>/usage_inbox``."""

import dagster as dg

from asset_pipeline.dagster_defs.metadata import markdown_table, schema_metadata, table_metadata
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.usage.intake import ingest_usage_files

GROUP = "usage_intake"


@dg.asset(group_name=GROUP, kinds={"deltalake"}, key="usage_events", metadata=schema_metadata("usage_events"))
def usage_events(context: dg.AssetExecutionContext, pipeline: PipelineHome) -> dg.MaterializeResult:
    """Events from JSONL/Parquet application logs in ``<home>/usage_inbox``; bad rows and unknown
    asset ids go to `usage_errors` with file, line and field (API events land directly)."""
    home = pipeline.open()
    s = ingest_usage_files(home.tables, home.settings.usage_inbox)
    if s.bad_rows:
        context.log.warning(f"{s.bad_rows} usage rows rejected ({s.unknown_assets} unknown asset ids)")
    for reason in s.left:
        context.log.warning(f"usage log left in the inbox, to be read again: {reason}")
    return dg.MaterializeResult(metadata={
        "files": len(s.files), "events": s.events, "bad_rows": s.bad_rows, "unknown_assets": s.unknown_assets,
        "left_in_inbox": "\n".join(s.left) or "none",
        "errors": markdown_table([{k: e[k] for k in ("source", "line", "field", "reason")} for e in s.errors[:20]]),
        **table_metadata(home.tables, "usage_events"),
    })
