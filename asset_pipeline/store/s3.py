"""S3 backend over a boto3 client (from dagster-aws's S3Resource in Dagster runs).

S3 makes an object visible only when its upload (single PUT or completed multipart upload)
finishes, so no temp key is needed: a killed upload leaves nothing under the key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from asset_pipeline.failpoints import failpoint
from asset_pipeline.store.base import ObjectStore, is_sha256, key_for


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError  # imported on first S3 use: boto3 costs 0.1 s at start-up

    return ClientError


def _precondition(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


class S3ObjectStore(ObjectStore):
    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        multipart_threshold_bytes: int = 64 * 1024 * 1024,
        presign_expiry_s: int = 3600,
        storage_class: str | None = None,
    ):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.presign_expiry_s = presign_expiry_s
        self.storage_class = storage_class  # e.g. GLACIER_IR or DEEP_ARCHIVE for an archive store
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=max(8 * 1024 * 1024, multipart_threshold_bytes // 4),
            max_concurrency=4,
        )
        # Every blob write is conditional (If-None-Match: *), whether boto3's transfer manager
        # makes it one PUT or a multipart upload: of two writers racing on the same content exactly
        # one creates the key, so the dedup count stays exact and nothing is ever overwritten.
        blobs = self.key("0" * 64).rsplit("/", 3)[0] + "/"

        def conditional(params: dict, **_: Any) -> None:
            if params.get("Key", "").startswith(blobs):
                params.setdefault("IfNoneMatch", "*")

        for op in ("PutObject", "CompleteMultipartUpload"):
            client.meta.events.register(f"before-parameter-build.s3.{op}", conditional,
                                        unique_id=f"asset-pipeline-conditional-{op}-{bucket}-{blobs}")

    def key(self, sha256: str) -> str:
        return f"{self.prefix}/{key_for(sha256)}" if self.prefix else key_for(sha256)

    def _head(self, sha256: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except _client_error() as exc:
            if _missing(exc):
                return None
            raise

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def size(self, sha256: str) -> int:
        head = self._head(sha256)
        if head is None:
            raise FileNotFoundError(f"s3://{self.bucket}/{self.key(sha256)}")
        return int(head["ContentLength"])

    def put_file(self, path: Path, sha256: str) -> bool:
        if self.exists(sha256):
            return False
        failpoint("blob-write")
        try:
            self.client.upload_file(
                str(path), self.bucket, self.key(sha256), Config=self.transfer,
                ExtraArgs={"Metadata": {"sha256": sha256},
                           **({"StorageClass": self.storage_class} if self.storage_class else {})},
            )
        except Exception as exc:  # boto3 wraps the refusal (S3UploadFailedError) for multipart uploads
            if "PreconditionFailed" in str(exc) or "(412)" in str(exc) or _precondition(exc):
                return False  # another writer created the key first: same bytes, counted once
            raise
        return True

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        """Multipart uploads of blobs that a killed writer never completed."""
        cutoff = datetime.now(UTC) - older_than
        base = self.key("0" * 64).rsplit("/", 3)[0] + "/"
        aborted = 0
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=base):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                       UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def put_stream(self, stream: BinaryIO) -> tuple[str, int, bool]:
        # The key is the hash, which is only known at the end: spool to a local temp file
        # (streamed, constant memory), then upload it like any file.
        import tempfile

        from asset_pipeline.hashing import CHUNK, hash_file

        with tempfile.NamedTemporaryFile(prefix="asset-pipeline-") as tmp:
            while chunk := stream.read(CHUNK):
                tmp.write(chunk)
            tmp.flush()
            sha, size = hash_file(tmp.name)
            written = self.put_file(Path(tmp.name), sha)
        return sha, size, written

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))["Body"]
        except _client_error() as exc:
            if _missing(exc):
                raise FileNotFoundError(f"s3://{self.bucket}/{self.key(sha256)}") from exc
            raise

    def delete(self, sha256: str) -> bool:
        existed = self.exists(sha256)
        self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        return existed

    def _trash_key(self, sha256: str) -> str:
        return f"{self.prefix}/trash/{sha256}" if self.prefix else f"trash/{sha256}"

    def _move(self, src: str, dst: str) -> bool:
        """Server-side copy, then delete the source (multipart copy for large blobs)."""
        try:
            self.client.copy({"Bucket": self.bucket, "Key": src}, self.bucket, dst)
        except _client_error() as exc:
            if _missing(exc):
                return False
            raise
        self.client.delete_object(Bucket=self.bucket, Key=src)
        return True

    def hide(self, sha256: str) -> bool:
        return self._move(self.key(sha256), self._trash_key(sha256))

    def unhide(self, sha256: str) -> bool:
        return self._move(self._trash_key(sha256), self.key(sha256))

    def purge_hidden(self, sha256: str) -> bool:
        key = self._trash_key(sha256)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except _client_error() as exc:
            if _missing(exc):
                return False
            raise
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def hidden_hashes(self) -> Iterator[str]:
        base = self._trash_key("")
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if is_sha256(name):
                    yield name

    def modified_at(self, sha256: str) -> float | None:
        head = self._head(sha256)
        return head["LastModified"].timestamp() if head else None

    def iter_hashes(self) -> Iterator[str]:
        # One paginated listing beats a HEAD per key when walking the whole store.
        base = f"{self.prefix}/objects/" if self.prefix else "objects/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if is_sha256(name):
                    yield name

    def url(self, sha256: str, expires_s: int | None = None) -> str:
        return self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(sha256)},
            ExpiresIn=expires_s or self.presign_expiry_s,
        )
