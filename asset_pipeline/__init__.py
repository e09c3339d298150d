"""asset_pipeline: AI-generated content as Dagster software-defined assets.

Notebook entry point: :class:`Catalog`. Every error the package raises on purpose is importable
from here and from :mod:`asset_pipeline.errors`.
"""

from importlib.metadata import PackageNotFoundError, version

from asset_pipeline.catalog import Catalog
from asset_pipeline.content import AssetContent
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
from asset_pipeline.results import QueryResult, SearchHits
from asset_pipeline.settings import Settings

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
