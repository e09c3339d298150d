"""Sensors: `inbox_sensor` fires when new generator outputs land in the inbox."""


import time

import dagster as dg

from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.inbox import list_s3
from asset_pipeline.sensing import SensorPlan, folders_in, list_changed, plan_ingest_requests


def build_inbox_sensor(job: "dg.JobDefinition | object", interval_s: int = 30,
                       orphan_after_s: float = 300.0) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.STOPPED,
               description="Starts an ingest run for inbox inputs whose sidecar has landed (or that waited "
                           f"{orphan_after_s:.0f}s without one); one run key per batch of files.")
    def inbox_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineHome) -> dg.SensorResult:
        settings = pipeline.settings()
        now = time.time_ns()
        folders = None
        if settings.inbox_is_s3:  # no folder mtimes on S3: the prefix is listed (a consumed inbox stays small)
            bucket, prefix = settings.inbox_s3()
            listing = list_s3(pipeline.open().s3_client, bucket, prefix)
        else:
            from pathlib import Path

            # Only folders whose mtime moved are listed: a tick costs what changed, not what was ingested.
            listing, folders = list_changed(Path(settings.inbox), folders_in(context.cursor), now, orphan_after_s)
        plan = plan_ingest_requests(listing, context.cursor, now, orphan_after_s, folders=folders)
        requests = [
            dg.RunRequest(run_key=SensorPlan.run_key(batch, listing),
                          run_config={"ops": {"ingest": {"config": {"paths": batch}}}},
                          tags={"asset_pipeline/inputs": str(len(batch))})
            for batch in plan.batches
        ]
        return dg.SensorResult(run_requests=requests, cursor=plan.cursor)

    return inbox_sensor


def build_embed_sensor(job: "dg.JobDefinition | object") -> dg.SensorDefinition:
    @dg.asset_sensor(asset_key=dg.AssetKey("asset_versions"), job=job, default_status=dg.DefaultSensorStatus.STOPPED,
                     description="Starts the (GPU-tagged) embedding job after each ingest that recorded versions: "
                                 "a sensor rather than declarative automation, so that the run is the embed job with "
                                 "its executor and GPU tags and ingests that added nothing start nothing.")
    def embed_after_ingest(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
        materialization = asset_event.asset_materialization
        new = materialization.metadata.get("new_versions") if materialization else None
        if new is not None and new.value == 0:
            return dg.SkipReason("the last ingest recorded no new versions")
        return dg.RunRequest(run_key=f"embed-after-{asset_event.run_id}")

    return embed_after_ingest


def build_usage_inbox_sensor(job: "dg.JobDefinition | object", interval_s: int = 60) -> dg.SensorDefinition:
    @dg.sensor(job=job, minimum_interval_seconds=interval_s, default_status=dg.DefaultSensorStatus.STOPPED,
               description="Starts a usage-intake run when JSONL/Parquet event files land in <home>/usage_inbox.")
    def usage_inbox_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineHome):
        from asset_pipeline.usage.intake import pending_files

        files = pending_files(pipeline.settings().usage_inbox)
        if not files:
            return dg.SkipReason("no usage files waiting")
        stamp = "\n".join(f"{f.name}:{f.size}:{f.mtime_ns}" for f in files)
        import hashlib

        # (a name that is not UTF-8 is listed with its bad bytes as surrogates: hashed as those bytes)
        digest = hashlib.sha256(stamp.encode("utf-8", "surrogateescape")).hexdigest()
        return dg.RunRequest(run_key=f"usage-{digest[:32]}")

    return usage_inbox_sensor
