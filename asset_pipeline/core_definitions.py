"""Dagster code location of every group but the usage reports (see `workspace.yaml`): ingest,
embeddings, lifecycle, provenance, collections, usage intake. Its processes never import dbt;
`asset_pipeline.usage_definitions` holds the rest."""

from asset_pipeline.dagster_defs.build import ALL_GROUPS, build_definitions

defs = build_definitions(groups=[g for g in ALL_GROUPS if g != "usage"])
