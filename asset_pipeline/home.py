"""One way to open the home (local or S3) — used by the Dagster resources, the CLI and `Catalog`."""

from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

from asset_pipeline.inbox import InboxItem, iter_local, scan_local, scan_s3
from asset_pipeline.ingest import IngestSummary, Progress, ingest_stream, new_run_id
from asset_pipeline.settings import Settings
from asset_pipeline.store import LocalObjectStore, ObjectStore, S3ObjectStore
from asset_pipeline.tables import Tables


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
        self.delete_from_s3_inbox([rel] + ([rel + ".meta.json"] if with_sidecar else []))

    def delete_from_s3_inbox(self, rels: list[str]) -> None:
        """Delete these inbox paths from an S3 inbox (1,000 keys a request)."""
        bucket, prefix = self.settings.inbox_s3()
        base = f"{prefix}/" if prefix else ""
        for lo in range(0, len(rels), 1000):
            self.s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": base + r}
                                                                            for r in rels[lo:lo + 1000]]})

    def ingest(self, only: list[str] | None = None, progress: Progress | None = None,
               run_id: str | None = None, verify: bool = False) -> IngestSummary:
        """Scan, store and commit the inbox batch by batch (what the Dagster `ingest` asset runs).

        A consumed inbox loses each input once its batch is committed (hard-linked into a local
        store on its filesystem: no copy); a kept inbox is never touched and its re-scans read
        only what the hash cache does not know (`verify`: re-hash everything)."""
        from contextlib import closing, nullcontext

        from asset_pipeline.consume import consume_local, consume_with
        from asset_pipeline.hashcache import HashCache, cache_file

        s = self.settings
        run_id = run_id or new_run_id()
        items = self.scan_inbox(only, run_id) if s.inbox_is_s3 else iter_local(Path(s.inbox), only)
        consume = None
        if s.consumes_inbox:
            consume = consume_with(self.delete_from_s3_inbox) if s.inbox_is_s3 else consume_local
        on_moved = None
        if s.inbox_is_s3 and s.consumes_inbox:
            def on_moved(r):  # noqa: E306 - the S3 original goes only once the local copy is safe
                self.remove_from_s3_inbox(r.item.rel, r.item.sidecar is not None)
        keep_cache = not s.consumes_inbox and not s.inbox_is_s3
        try:
            with closing(HashCache(cache_file(s.home))) if keep_cache else nullcontext() as cache:
                return ingest_stream(
                    items, self.store, self.tables, s.quarantine_dir if s.consumes_inbox else None, run_id,
                    workers=s.workers, progress=progress, consume=consume,
                    give_inode=s.consumes_inbox or s.inbox_is_s3,  # an S3 inbox's spool copies are ours
                    cache=cache, verify=verify, on_quarantined=on_moved, batch_files=s.ingest_batch_files)
        finally:
            spool = self.spool_dir(run_id)
            if spool.exists():
                shutil.rmtree(spool, ignore_errors=True)
