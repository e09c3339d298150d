"""asset_pipeline: AI-generated content as Dagster software-defined assets.

Notebook entry point: :class:`Catalog`. The names below are imported when first used, so a
process that needs one module (the CLI, a Dagster step, an ingest worker) does not import the
catalog's dependencies (pyarrow, DuckDB, Delta, LanceDB) with the package.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from asset_pipeline.errors import (
    AssetNotFound,
    AssetPipelineError,
    AssetUnavailable,
    InputRejected,
    ObjectMissing,
)
from asset_pipeline.settings import Settings

if TYPE_CHECKING:
    from asset_pipeline.catalog import AssetContent, Catalog
    from asset_pipeline.collections import CollectionNotFound, PermissionDenied

_LAZY = {"Catalog": "asset_pipeline.catalog", "AssetContent": "asset_pipeline.catalog",
         "PermissionDenied": "asset_pipeline.collections", "CollectionNotFound": "asset_pipeline.collections"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asset_pipeline' has no attribute {name!r}")

__all__ = [
    "Catalog", "AssetContent", "Settings", "AssetPipelineError", "AssetNotFound", "AssetUnavailable",
    "InputRejected", "ObjectMissing", "PermissionDenied", "CollectionNotFound",
]
