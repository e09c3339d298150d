"""asset_pipeline: AI-generated content as Dagster software-defined assets.

Notebook entry point: :class:`Catalog`. Every error the package raises on purpose is importable
from here and from :mod:`asset_pipeline.errors`. The catalog and the result types are imported
when first used, so a process that needs one module (the CLI, a Dagster step, an ingest worker)
does not import the catalog's dependencies (pyarrow, DuckDB, Delta, LanceDB) with the package.
"""

# First: stamps the package's source as this process imports it (see loaded_code: what a kept
# inbox's remembered rejects are labelled with).
from asset_pipeline import loaded_code  # noqa: F401, I001

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from asset_pipeline.errors import (
    AssetNotFound,
    AssetPipelineError,
    AssetUnavailable,
    CollectionNotFound,
    CommitConflict,
    ConfigError,
    HomeNotFound,
    InputRejected,
    InvalidEvent,
    InvalidRequest,
    LifecycleError,
    LocationError,
    LockTimeout,
    MassDeleteRefused,
    ModelUnavailable,
    NoEmbeddings,
    ObjectCorrupt,
    ObjectMissing,
    OutputError,
    PermissionDenied,
    PolicyError,
    QueryError,
    RecallError,
    SearchError,
    UnsafeStore,
)
from asset_pipeline.settings import Settings

if TYPE_CHECKING:
    from asset_pipeline.catalog import Catalog
    from asset_pipeline.content import AssetContent
    from asset_pipeline.results import QueryResult, SearchHits

_LAZY = {"Catalog": "asset_pipeline.catalog", "AssetContent": "asset_pipeline.content",
         "QueryResult": "asset_pipeline.results", "SearchHits": "asset_pipeline.results"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'asset_pipeline' has no attribute {name!r}")

try:
    __version__ = version("asset-pipeline")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Catalog", "AssetContent", "Settings", "QueryResult", "SearchHits", "__version__", "AssetPipelineError",
    "AssetNotFound", "AssetUnavailable", "CollectionNotFound", "CommitConflict", "HomeNotFound", "InputRejected",
    "InvalidEvent", "InvalidRequest", "LifecycleError", "LocationError", "LockTimeout", "ModelUnavailable",
    "NoEmbeddings", "ObjectCorrupt", "ObjectMissing", "PermissionDenied", "PolicyError", "QueryError", "RecallError",
    "SearchError", "UnsafeStore", "ConfigError", "MassDeleteRefused", "OutputError",
]
