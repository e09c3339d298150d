"""One way to open the home (local or S3) — used by the Dagster resources, the CLI and `Catalog`."""

from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

from asset_pipeline.errors import HomeNotFound
from asset_pipeline.inbox import InboxItem, scan_local, scan_s3
from asset_pipeline.ingest import IngestSummary, Progress, commit_batch, new_run_id, store_items
from asset_pipeline.settings import Settings
from asset_pipeline.store import LocalObjectStore, ObjectStore, S3ObjectStore
from asset_pipeline.tables import Tables


def require_home(settings: Settings) -> None:
    """Refuse a home that does not exist: a mistyped $ASSET_PIPELINE_HOME must not quietly become a
    new, empty home (only `init`, `quickstart` and an explicit path create one)."""
    if not settings.home.is_dir():
        raise HomeNotFound(f"no home at {settings.home} (ASSET_PIPELINE_HOME, default ./data): check the path, "
                           f"or create it with: asset-pipeline init (or asset-pipeline quickstart)")


class Home:
    """The state under one home: object store, Delta tables, inbox and quarantine."""

    def __init__(self, settings: Settings | None = None, s3_client: Any = None):
        self.settings = settings or Settings.from_env()
        self._s3_client = s3_client
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.tables = Tables(self.settings.tables_dir, self.settings.commit_retries)

    @cached_property
    def s3_client(self) -> Any:
        if self._s3_client is None:
            import boto3

            self._s3_client = boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url,
                                           region_name=self.settings.s3_region)
        return self._s3_client

    @cached_property
    def store(self) -> ObjectStore:
        s = self.settings
        if s.store_is_s3:
            bucket, prefix = s.store_s3()
            return S3ObjectStore(self.s3_client, bucket, prefix, s.multipart_threshold_bytes, s.presign_expiry_s)
        if s.store != "local":
            raise ValueError(f"store must be 'local' or an s3:// URI, got {s.store!r}")
        return LocalObjectStore(s.home, durable=s.durable)

    def archive_store(self, storage_class: str | None = None) -> ObjectStore:
        """The second object store that archived blobs move to (colder storage class on S3)."""
        s = self.settings
        if s.archive.startswith("s3://"):
            from asset_pipeline.settings import _split_s3

            bucket, prefix = _split_s3(s.archive)
            return S3ObjectStore(self.s3_client, bucket, prefix, s.multipart_threshold_bytes, s.presign_expiry_s,
                                 storage_class=storage_class)
        if s.archive != "local":
            raise ValueError(f"archive must be 'local' or an s3:// URI, got {s.archive!r}")
        return LocalObjectStore(s.archive_dir, durable=s.durable)

    def lock(self, name: str, timeout_s: float = 3600.0):
        """An exclusive lock of this home for `name` (lifecycle, analytics…), across processes;
        released by the kernel if the holder dies."""
        from asset_pipeline.locks import file_lock

        return file_lock(self.settings.home / "locks" / f"{name}.lock", timeout_s, what=f"{name} lock")

    def spool_dir(self, run_id: str) -> Path:
        return self.settings.home / "spool" / run_id

    def scan_inbox(self, only: list[str] | None = None, run_id: str | None = None) -> list[InboxItem]:
        """Inputs waiting in the inbox (S3 inputs are downloaded to ``<home>/spool/<run>``)."""
        s = self.settings
        if s.inbox_is_s3:
            bucket, prefix = s.inbox_s3()
            return scan_s3(self.s3_client, bucket, prefix, self.spool_dir(run_id or new_run_id()), only)
        return scan_local(Path(s.inbox), only)

    def remove_from_s3_inbox(self, rel: str, with_sidecar: bool = True) -> None:
        """After an S3 input is quarantined locally, the original leaves the S3 inbox."""
        bucket, prefix = self.settings.inbox_s3()
        base = f"{prefix}/" if prefix else ""
        keys = [base + rel] + ([base + rel + ".meta.json"] if with_sidecar else [])
        self.s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})

    def ingest(self, only: list[str] | None = None, progress: Progress | None = None,
               run_id: str | None = None) -> IngestSummary:
        """Scan, store and commit in one call (what the Dagster assets do step by step)."""
        run_id = run_id or new_run_id()
        items = self.scan_inbox(only, run_id)
        batch = store_items(items, self.store, self.tables, self.settings.workers, progress)
        return self.commit(batch, run_id)

    def commit(self, batch, run_id: str) -> IngestSummary:
        on_moved = None
        if self.settings.inbox_is_s3:
            def on_moved(r):  # noqa: E306 - the S3 original goes only once the local copy is safe
                self.remove_from_s3_inbox(r.item.rel, r.item.sidecar is not None)
        summary = commit_batch(batch, self.store, self.tables, self.settings.quarantine_dir, run_id, on_moved)
        spool = self.spool_dir(run_id)
        if spool.exists():
            shutil.rmtree(spool, ignore_errors=True)
        return summary
