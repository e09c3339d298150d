"""One way to open the home (a local folder or ``s3://bucket/prefix``) — used by the Dagster
resources, the CLI and `Catalog`. It alone decides where each piece of state lives."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from asset_pipeline.errors import HomeNotFound
from asset_pipeline.failpoints import failpoint
from asset_pipeline.inbox import InboxItem, iter_local, scan_local, scan_s3
from asset_pipeline.ingest import IngestSummary, Progress, ingest_stream, new_run_id
from asset_pipeline.location import Location
from asset_pipeline.settings import Settings
from asset_pipeline.store import LocalObjectStore, ObjectStore, S3ObjectStore
from asset_pipeline.tables import Tables


def require_home(settings: Settings) -> None:
    """Refuse a home that does not exist: a mistyped $ASSET_PIPELINE_HOME must not quietly become a
    new, empty home (only `init`, `quickstart` and an explicit path create one)."""
    if not settings.home.is_s3 and not settings.home.path.is_dir():  # an S3 prefix exists once written to
        raise HomeNotFound(f"no home at {settings.home} (ASSET_PIPELINE_HOME, default ./data): check the path, "
                           f"or create it with: asset-pipeline init (or asset-pipeline quickstart)")


class Home:
    """The state under one home: object store, Delta tables, LanceDB, inbox, quarantine, locks.

    On S3 every piece lives under the home's prefix; only per-run scratch (spooled S3 inputs, a
    report build's working copy) touches the local disk, in this process's temp folder. Opening an
    S3 home checks once that its endpoint refuses a second conditional PUT — the mechanism Delta
    and LanceDB commits rely on — and refuses the home otherwise."""

    def __init__(self, settings: Settings | None = None, s3_client: Any = None):
        self.settings = settings or Settings.from_env()
        self._s3_client = s3_client
        root = self.settings.home
        if root.is_s3:
            from asset_pipeline.locks import verify_conditional_put

            verify_conditional_put(self.s3_client, root.bucket, root.key, self.settings.s3_endpoint_url)
            root = Location(root.uri, self.s3_access)
        else:
            root.mkdir()
        self.root = root
        self.tables = Tables(root / "tables", self.settings.commit_retries)

    @cached_property
    def s3_client(self) -> Any:
        if self._s3_client is None:
            import boto3

            self._s3_client = boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url,
                                           region_name=self.settings.s3_region)
        return self._s3_client

    @property
    def s3_access(self):
        from asset_pipeline.location import S3Access

        return S3Access(self.settings.s3_endpoint_url, self.settings.s3_region, self.s3_client)

    def _s3_store(self, uri: str, storage_class: str | None = None) -> S3ObjectStore:
        where = Location.parse(uri)
        s = self.settings
        return S3ObjectStore(self.s3_client, where.bucket, where.key, s.multipart_threshold_bytes, s.presign_expiry_s,
                             storage_class=storage_class)

    @cached_property
    def store(self) -> ObjectStore:
        s = self.settings
        if s.store != "local":
            return self._s3_store(s.store)
        if self.root.is_s3:
            return self._s3_store(self.root.uri)
        local = LocalObjectStore(self.root.path, durable=s.durable)
        if s.replica:
            from asset_pipeline.replica import ReplicatedStore

            return ReplicatedStore(local, self._s3_store(s.replica), self.tables)
        return local

    def archive_store(self, storage_class: str | None = None) -> ObjectStore:
        """The second object store that archived blobs move to (colder storage class on S3)."""
        s = self.settings
        if s.archive != "local":
            return self._s3_store(s.archive, storage_class)
        if self.root.is_s3:
            return self._s3_store((self.root / "archive").uri, storage_class)
        return LocalObjectStore(self.root.path / "archive", durable=s.durable)

    @property
    def vectors(self):
        """The LanceDB database of this home (one table per embedding model)."""
        from asset_pipeline.embeddings.vectors import VectorStore

        return VectorStore(self.root / "lancedb")

    @contextmanager
    def lock(self, name: str, timeout_s: float = 3600.0) -> Iterator[None]:
        """An exclusive lock of this home for `name` (lifecycle, analytics…), across processes and
        hosts; released if the holder dies (a flock locally, an expiring lease on S3). The
        failpoint ``lock-<name>`` marks a process that is about to wait for it."""
        from asset_pipeline.locks import location_lock

        where = self.root / "locks" / (f"{name}.lease" if self.root.is_s3 else f"{name}.lock")
        failpoint(f"lock-{name}")
        with location_lock(where, timeout_s, f"{name} lock"):
            yield

    def recompute(self, table: str, compute: Callable[[], list[dict]]) -> list[dict]:
        """Compute a derived table's rows and replace the table with them, under that table's
        lock: runs that overlap (automation after an ingest, a manual one) take turns, so a
        count made before another run's newer one never replaces it last."""
        with self.lock(table):
            rows = compute()
            failpoint(f"replace-{table}")
            self.tables.replace(table, rows)
        return rows

    def spool_dir(self, run_id: str) -> Path:
        """Per-run scratch for S3 inbox inputs: local, in this process's temp folder."""
        return Path(tempfile.gettempdir()) / f"asset-pipeline-spool-{run_id}"

    def scan_inbox(self, only: list[str] | None = None, run_id: str | None = None) -> list[InboxItem]:
        """Inputs waiting in the inbox (S3 inputs are downloaded to a per-run spool folder)."""
        s = self.settings
        if s.inbox_is_s3:
            bucket, prefix = s.inbox_s3()
            return scan_s3(self.s3_client, bucket, prefix, self.spool_dir(run_id or new_run_id()), only)
        return scan_local(Path(s.inbox), only)

    def remove_from_s3_inbox(self, item: InboxItem) -> None:
        """After an S3 input is quarantined locally, the original leaves the S3 inbox: exactly the
        keys its copies came from (an object that could not be read stays where it is)."""
        keys = [k for k in (item.s3_key, item.s3_sidecar_key) if k is not None]
        if keys:
            bucket, _ = self.settings.inbox_s3()
            self.s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})

    def delete_from_s3_inbox(self, keys: list[str]) -> None:
        """Delete these exact keys from an S3 inbox (1,000 a request)."""
        bucket, _ = self.settings.inbox_s3()
        for lo in range(0, len(keys), 1000):
            self.s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[lo:lo + 1000]]})

    def ingest(self, only: list[str] | None = None, progress: Progress | None = None,
               run_id: str | None = None, verify: bool = False) -> IngestSummary:
        """Scan, store and commit the inbox batch by batch (what the Dagster `ingest` asset runs).

        A consumed inbox loses each input once its batch is committed (hard-linked into a local
        store on its filesystem: no copy); a kept inbox is never touched and its re-scans read
        only what the hash cache does not know (`verify`: re-hash everything)."""
        from contextlib import closing, nullcontext

        from asset_pipeline.consume import consume_local, consume_with
        from asset_pipeline.hashcache import HashCache, cache_file
        from asset_pipeline.heap import frozen_heap

        s = self.settings
        run_id = run_id or new_run_id()
        items = self.scan_inbox(only, run_id) if s.inbox_is_s3 else iter_local(Path(s.inbox), only)
        consume = None
        if s.consumes_inbox:
            consume = consume_with(self.delete_from_s3_inbox) if s.inbox_is_s3 else consume_local
        on_moved = None
        if s.inbox_is_s3 and s.consumes_inbox:
            def on_moved(r):  # noqa: E306 - the S3 original goes only once the quarantined copy is safe
                self.remove_from_s3_inbox(r.item)
        # The hash cache is a local file per host: for a kept local inbox of a local home.
        keep_cache = not s.consumes_inbox and not s.inbox_is_s3 and not self.root.is_s3
        try:  # (the process's own objects are not garbage: see asset_pipeline.heap)
            with closing(HashCache(cache_file(self.root.path))) if keep_cache else nullcontext() as cache, \
                    frozen_heap():
                summary = ingest_stream(
                    items, self.store, self.tables, self.root / "quarantine" if s.consumes_inbox else None, run_id,
                    workers=s.workers, progress=progress, limits=s.validation_limits(), consume=consume,
                    give_inode=s.consumes_inbox or s.inbox_is_s3,  # an S3 inbox's spool copies are ours
                    cache=cache, verify=verify, on_quarantined=on_moved, batch_files=s.ingest_batch_files)
        finally:
            shutil.rmtree(self.spool_dir(run_id), ignore_errors=True)
        if self.replicated:
            from asset_pipeline.replica import replicate

            summary.replica = replicate(self.store)  # after the commits: only blobs of committed versions
        return summary

    @property
    def replicated(self) -> bool:
        from asset_pipeline.replica import ReplicatedStore

        return isinstance(self.store, ReplicatedStore)
