"""Where all state lives, read once from the environment.

One `Settings` value is shared by the CLI, the Dagster resources and `Catalog`, so the three
always agree on the home, the inbox and the object store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_HOME = "data"


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI has no bucket: {uri!r}")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class Settings:
    """Locations of the home (tables, quarantine, local objects), the inbox and the store.

    `store` is ``"local"`` (blobs under ``<home>/objects``) or an ``s3://bucket/prefix`` URI.
    `inbox` is a local folder or an ``s3://bucket/prefix`` URI.
    """

    home: Path
    inbox: str
    store: str = "local"
    archive: str = "local"  # "local" (<home>/archive) or s3://bucket/prefix
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    presign_expiry_s: int = 3600
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    durable: bool = True
    commit_retries: int = 12  # attempts of a Delta commit that keeps losing to concurrent writers
    workers: int = field(default_factory=lambda: max(2, min(8, os.cpu_count() or 2)))
    # Content credentials on export (issue 14): a PEM certificate chain (leaf first) and its key
    # sign a C2PA manifest into every exported copy; trust anchors (PEM) judge signers when reading.
    c2pa_sign_cert: str | None = None
    c2pa_sign_key: str | None = None
    c2pa_sign_alg: str = "es256"
    c2pa_tsa_url: str | None = None
    c2pa_trust_anchors: str | None = None
    # Where the steps of a run execute (issue 12): "default" (ingest in process, the rest in
    # subprocesses of the run), "celery" (every step on dagster-celery workers; broker and result
    # backend at `celery_broker`), "k8s" (the embedding job's steps in pods of their own).
    executor: str = "default"
    celery_broker: str = "redis://127.0.0.1:6379/0"

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
        """Read ``ASSET_PIPELINE_HOME`` / ``_INBOX`` / ``_STORE`` (plus AWS endpoint and region)."""
        home_path = Path(home or os.environ.get("ASSET_PIPELINE_HOME") or DEFAULT_HOME).absolute()
        inbox = os.environ.get("ASSET_PIPELINE_INBOX") or str(home_path / "inbox")
        settings = cls(
            home=home_path,
            inbox=inbox,
            store=os.environ.get("ASSET_PIPELINE_STORE", "local"),
            archive=os.environ.get("ASSET_PIPELINE_ARCHIVE", "local"),
            s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            s3_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            c2pa_sign_cert=os.environ.get("ASSET_PIPELINE_C2PA_CERT") or None,
            c2pa_sign_key=os.environ.get("ASSET_PIPELINE_C2PA_KEY") or None,
            c2pa_sign_alg=os.environ.get("ASSET_PIPELINE_C2PA_ALG") or "es256",
            c2pa_tsa_url=os.environ.get("ASSET_PIPELINE_C2PA_TSA_URL") or None,
            c2pa_trust_anchors=os.environ.get("ASSET_PIPELINE_C2PA_TRUST_ANCHORS") or None,
            executor=os.environ.get("ASSET_PIPELINE_EXECUTOR") or "default",
            celery_broker=os.environ.get("ASSET_PIPELINE_CELERY_BROKER") or "redis://127.0.0.1:6379/0",
        )
        return replace(settings, **overrides) if overrides else settings

    # Paths derived from the home; kept here so every component uses the same layout.
    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"

    @property
    def tables_dir(self) -> Path:
        return self.home / "tables"

    @property
    def lancedb_dir(self) -> Path:
        return self.home / "lancedb"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def inbox_is_s3(self) -> bool:
        return self.inbox.startswith("s3://")

    @property
    def store_is_s3(self) -> bool:
        return self.store.startswith("s3://")

    def inbox_s3(self) -> tuple[str, str]:
        return _split_s3(self.inbox)

    def store_s3(self) -> tuple[str, str]:
        return _split_s3(self.store)

    @property
    def archive_dir(self) -> Path:
        return self.home / "archive"

    @property
    def retention_file(self) -> Path:
        return self.home / "retention.yaml"
