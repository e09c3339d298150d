"""Dagster entry point (`workspace.yaml`, `dagster dev -m asset_pipeline.definitions`). Wiring only.

The deployment is chosen by environment: ASSET_PIPELINE_HOME (default ./data), ASSET_PIPELINE_INBOX,
ASSET_PIPELINE_STORE ('local' or s3://bucket/prefix), AWS_ENDPOINT_URL / AWS_REGION for S3.
"""

from __future__ import annotations

import dagster as dg

from asset_pipeline.dagster_defs.assets import ingest
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.dagster_defs.sensors import build_inbox_sensor
from asset_pipeline.settings import Settings

INGEST_JOB = "ingest_job"


def build_definitions(settings: Settings | None = None, progress: bool = False) -> dg.Definitions:
    settings = settings or Settings.from_env()
    ingest_job = dg.define_asset_job(INGEST_JOB, selection=dg.AssetSelection.groups(ingest.GROUP),
                                     description="Ingest the inbox into the store and the Delta tables.")
    return dg.Definitions(
        assets=dg.load_assets_from_modules([ingest]),
        asset_checks=[],
        jobs=[ingest_job],
        sensors=[build_inbox_sensor(ingest_job)],
        resources={"pipeline": PipelineHome.from_settings(settings, progress=progress)},
    )


defs = build_definitions()
