"""Content-addressed object store: one interface, a local and an S3 backend."""

from asset_pipeline.store.base import ObjectStore, is_sha256, key_for
from asset_pipeline.store.local import LocalObjectStore
from asset_pipeline.store.s3 import S3ObjectStore

__all__ = ["ObjectStore", "LocalObjectStore", "S3ObjectStore", "key_for", "is_sha256"]
