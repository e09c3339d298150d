"""Dagster entry point (`workspace.yaml`, `dagster dev -m asset_pipeline.definitions`). Wiring only.

The deployment is chosen by environment: ASSET_PIPELINE_HOME (default ./data), ASSET_PIPELINE_INBOX,
ASSET_PIPELINE_STORE ('local' or s3://bucket/prefix), AWS_ENDPOINT_URL / AWS_REGION for S3, and
ASSET_PIPELINE_EXECUTOR ('default', 'celery' or 'k8s'; see dagster_defs/executors.py).
"""

from __future__ import annotations

import dagster as dg
from dagster_dbt import DbtCliResource

from asset_pipeline.dagster_defs.assets import collections, embeddings, ingest, lifecycle, provenance, usage
from asset_pipeline.dagster_defs.executors import default_executor, job_executor
from asset_pipeline.dagster_defs.k8s import COORDINATOR_K8S_CONFIG, k8s_tags
from asset_pipeline.dagster_defs.resources import ClipEmbedder, PipelineHome
from asset_pipeline.dagster_defs.sensors import build_embed_sensor, build_inbox_sensor, build_usage_inbox_sensor
from asset_pipeline.settings import Settings
from asset_pipeline.usage.dbt_project import dbt_executable

INGEST_JOB = "ingest_job"
EMBED_JOB = "embed_job"
USAGE_JOB = "usage_job"
USAGE_INTAKE_JOB = "usage_intake_job"
LIFECYCLE_JOB = "lifecycle_job"
PROVENANCE_JOB = "provenance_job"
RECALL_JOB = "recall_job"


def EXCLUSIVE(name: str) -> dict[str, str]:  # noqa: N802 - reads as a constant at the call site
    """Run tag that the instance's run queue limits to one run per value (see dagster.yaml)."""
    return {"asset_pipeline/exclusive": name}


def build_definitions(settings: Settings | None = None, progress: bool = False,
                      clip_model: str | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    clip_embeddings = embeddings.build_clip_embeddings(settings.embed_shards)

    def executor(job_name: str) -> dg.ExecutorDefinition | None:
        return job_executor(job_name, settings)

    # One step plus its checks: in process by default, so a run does not pay for a subprocess that
    # imports everything again. Ingests may run side by side (Delta merges re-planned on conflict).
    ingest_job = dg.define_asset_job(INGEST_JOB, selection=dg.AssetSelection.groups(ingest.GROUP),
                                     executor_def=executor(INGEST_JOB),
                                     description="Ingest the inbox into the store and the Delta tables.")
    # On Kubernetes the embedding step gets a GPU pod (its op tags); the run's own pod only
    # coordinates (these job tags), so the GPU node is held only while embedding.
    embed_job = dg.define_asset_job(EMBED_JOB, selection=dg.AssetSelection.groups(embeddings.GROUP),
                                    tags={**embeddings.GPU_TAGS, **k8s_tags(COORDINATOR_K8S_CONFIG)},
                                    executor_def=executor(EMBED_JOB),
                                    description="Embed new versions with open_clip (batch; GPU when present).")
    usage_job = dg.define_asset_job(USAGE_JOB, selection=dg.AssetSelection.groups(usage.GROUP),
                                    partitions_def=usage.DAILY, tags=EXCLUSIVE("analytics"),
                                    executor_def=executor(USAGE_JOB),
                                    description="Usage reports (dbt) and per-asset stats for a day or a range.")
    usage_intake_job = dg.define_asset_job(USAGE_INTAKE_JOB, selection=dg.AssetSelection.groups(usage.INTAKE_GROUP),
                                           executor_def=executor(USAGE_INTAKE_JOB))
    lifecycle_job = dg.define_asset_job(LIFECYCLE_JOB, selection=dg.AssetSelection.groups(lifecycle.GROUP),
                                        partitions_def=lifecycle.DAILY, tags=EXCLUSIVE("lifecycle"),
                                        executor_def=executor(LIFECYCLE_JOB),
                                        description="Retention sweep (archive, delete, hard delete) and upkeep.")
    provenance_job = dg.define_asset_job(PROVENANCE_JOB, selection=dg.AssetSelection.assets("models",
                                                                                         "storage_attribution"),
                                         executor_def=executor(PROVENANCE_JOB),
                                         description="Model rows and storage attributed per project/creator.")
    recall_job = dg.define_asset_job(RECALL_JOB, selection=dg.AssetSelection.assets("recalls"),
                                     tags=EXCLUSIVE("lifecycle"),  # changes statuses: never beside a sweep
                                     executor_def=executor(RECALL_JOB),
                                     description="Take down everything a model produced (config: model, reason, "
                                                 "by, dry_run).")
    return dg.Definitions(
        executor=default_executor(settings),
        assets=[ingest.inbox, ingest.ingest, clip_embeddings, embeddings.build_near_duplicates(clip_embeddings),
                *dg.load_assets_from_modules([usage]), *dg.load_assets_from_modules([collections]),
                *dg.load_assets_from_modules([lifecycle]), *dg.load_assets_from_modules([provenance])],
        asset_checks=ingest.CHECKS,
        jobs=[ingest_job, embed_job, usage_job, usage_intake_job, lifecycle_job, provenance_job, recall_job],
        schedules=[dg.build_schedule_from_partitioned_job(usage_job, hour_of_day=1, name="usage_daily"),
                   dg.build_schedule_from_partitioned_job(lifecycle_job, hour_of_day=3, name="lifecycle_daily")],
        sensors=[build_inbox_sensor(ingest_job), build_embed_sensor(embed_job),
                 build_usage_inbox_sensor(usage_intake_job)],
        resources={
            "pipeline": PipelineHome.from_settings(settings, progress=progress),
            "embedder": ClipEmbedder(model=clip_model),
            "dbt": DbtCliResource(project_dir=usage.DBT_PROJECT, dbt_executable=dbt_executable()),
        },
    )


defs = build_definitions()
