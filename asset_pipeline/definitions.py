"""Dagster entry point (`workspace.yaml`, `dagster dev -m asset_pipeline.definitions`). Wiring only.

The deployment is chosen by environment: ASSET_PIPELINE_HOME (default ./data), ASSET_PIPELINE_INBOX,
ASSET_PIPELINE_STORE ('local' or s3://bucket/prefix), AWS_ENDPOINT_URL / AWS_REGION for S3.
"""

from __future__ import annotations

import dagster as dg

from asset_pipeline.dagster_defs.assets import embeddings, ingest
from asset_pipeline.dagster_defs.resources import ClipEmbedder, PipelineHome
from asset_pipeline.dagster_defs.sensors import build_embed_sensor, build_inbox_sensor
from asset_pipeline.embeddings.model import DEFAULT_MODEL
from asset_pipeline.settings import Settings

INGEST_JOB = "ingest_job"
EMBED_JOB = "embed_job"


def build_definitions(settings: Settings | None = None, progress: bool = False,
                      clip_model: str = DEFAULT_MODEL) -> dg.Definitions:
    settings = settings or Settings.from_env()
    ingest_job = dg.define_asset_job(INGEST_JOB, selection=dg.AssetSelection.groups(ingest.GROUP),
                                     description="Ingest the inbox into the store and the Delta tables.")
    embed_job = dg.define_asset_job(EMBED_JOB, selection=dg.AssetSelection.groups(embeddings.GROUP),
                                    tags=embeddings.GPU_TAGS,
                                    description="Embed new versions with open_clip (batch; GPU when present).")
    return dg.Definitions(
        assets=[*dg.load_assets_from_modules([ingest]), *dg.load_assets_from_modules([embeddings])],
        jobs=[ingest_job, embed_job],
        sensors=[build_inbox_sensor(ingest_job), build_embed_sensor(embed_job)],
        resources={
            "pipeline": PipelineHome.from_settings(settings, progress=progress),
            "embedder": ClipEmbedder(model=clip_model),
        },
    )


defs = build_definitions()
