"""asset_pipeline: AI-generated content as Dagster software-defined assets.

Notebook entry point: :class:`Catalog`.
"""

from asset_pipeline.catalog import AssetContent, Catalog
from asset_pipeline.collections import CollectionNotFound, PermissionDenied
from asset_pipeline.errors import (
    AssetNotFound,
    AssetPipelineError,
    AssetUnavailable,
    InputRejected,
    ObjectMissing,
)
from asset_pipeline.settings import Settings

__all__ = [
    "Catalog", "AssetContent", "Settings", "AssetPipelineError", "AssetNotFound", "AssetUnavailable",
    "InputRejected", "ObjectMissing", "PermissionDenied", "CollectionNotFound",
]
