"""Dagster entry point for the whole project in one code location
(`dagster dev -m asset_pipeline.definitions`, `dagster asset materialize -m asset_pipeline.definitions`).
Wiring only.

`workspace.yaml` (what `dagster dev` reads by default, and the Helm values) splits the same
definitions into two code locations, `asset_pipeline.core_definitions` and
`asset_pipeline.usage_definitions`: the usage reports run dbt, and importing dagster-dbt costs about
1.4 s in every process that loads a location, so runs that build no report should not load it.
The deployment is chosen by environment: ASSET_PIPELINE_HOME (default ./data), ASSET_PIPELINE_INBOX,
ASSET_PIPELINE_STORE ('local' or s3://bucket/prefix), AWS_ENDPOINT_URL / AWS_REGION for S3, and
ASSET_PIPELINE_EXECUTOR ('default', 'celery' or 'k8s'; see dagster_defs/executors.py).
"""

from __future__ import annotations

from asset_pipeline.dagster_defs.build import (
    EMBED_JOB,
    EXCLUSIVE,
    INGEST_JOB,
    LIFECYCLE_JOB,
    PROVENANCE_JOB,
    RECALL_JOB,
    USAGE_INTAKE_JOB,
    USAGE_JOB,
    build_definitions,
)

__all__ = ["build_definitions", "defs", "EXCLUSIVE", "INGEST_JOB", "EMBED_JOB", "USAGE_JOB", "USAGE_INTAKE_JOB",
           "LIFECYCLE_JOB", "PROVENANCE_JOB", "RECALL_JOB"]

defs = build_definitions()
