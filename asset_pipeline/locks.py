"""Exclusive locks between processes, released when a holder dies.

They serialise the few things that must not overlap whoever starts them (a Dagster run, the CLI,
a notebook): creating a Dagster instance's storage, one retention sweep at a time, one report
build at a time. On a local home a `flock` (the kernel releases it on `kill -9`); on an S3 home a
lease object created with a conditional PUT and renewed while held (it expires when its holder
stops renewing). Also here: the probe that refuses an S3 endpoint without conditional writes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asset_pipeline.errors import LockTimeout, UnsafeStore

if TYPE_CHECKING:
    from asset_pipeline.location import Location

# How long a user's call (an archive, restore, delete or undelete; a collection's write) waits for
# a home lock held by a sweep, a recall or another user before it gives up with LockTimeout,
# instead of Home.lock's hour for scheduled runs (a sweep over a million assets takes seconds).
USER_LOCK_TIMEOUT_S = 300.0


def _say_waiting(what: str, where: str, timeout_s: float) -> None:
    """One line on stderr (a warning, so it shows without any logging set up) when a caller starts
    to wait: a user's command that waits for a sweep must not look hung."""
    logging.getLogger(__name__).warning("%s: waiting for another process that holds %s (up to %.0f s)",
                                        what, where, timeout_s)


@contextmanager
def file_lock(path: Path, timeout_s: float = 600.0, what: str | None = None) -> Iterator[None]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    _say_waiting(what or path.name, str(path), timeout_s)
                    waited = True
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{what or path.name}: another process has held {path} for over "
                                      f"{timeout_s:.0f}s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _precondition_failed(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("NoSuchKey", "404", "NotFound")


@contextmanager
def s3_lease(client: Any, bucket: str, key: str, ttl_s: float = 300.0, timeout_s: float = 600.0,
             what: str | None = None) -> Iterator[None]:
    """An exclusive lease on an S3 home: an object created with ``If-None-Match: *`` (only one
    creator wins), renewed by a background thread with ``If-Match`` on its ETag, deleted on exit.
    A holder that dies stops renewing; once its lease expires the next taker deletes it
    (conditionally, so two takers cannot both remove it) and creates its own."""
    from botocore.exceptions import ClientError

    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout_s
    etag = ""
    waited = False
    while True:
        body = json.dumps({"owner": owner, "expires": time.time() + ttl_s}).encode()
        try:
            etag = client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")["ETag"]
            break
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise
        try:
            held = client.get_object(Bucket=bucket, Key=key)
            expires = json.loads(held["Body"].read()).get("expires", 0)
            if expires < time.time():
                client.delete_object(Bucket=bucket, Key=key, IfMatch=held["ETag"])
                continue
        except ClientError as exc:
            if not (_missing(exc) or _precondition_failed(exc)):
                raise
            continue
        if time.monotonic() > deadline:
            raise LockTimeout(f"{what or key}: held by another process for over {timeout_s:.0f}s "
                              f"(s3://{bucket}/{key})")
        if not waited:
            _say_waiting(what or key, f"s3://{bucket}/{key}", timeout_s)
            waited = True
        time.sleep(0.2)
    stop = threading.Event()
    current = {"etag": etag}

    def renew() -> None:
        while not stop.wait(ttl_s / 3):
            body = json.dumps({"owner": owner, "expires": time.time() + ttl_s}).encode()
            try:
                current["etag"] = client.put_object(Bucket=bucket, Key=key, Body=body,
                                                    IfMatch=current["etag"])["ETag"]
            except ClientError:
                return  # lost (expired and taken over): nothing left to renew

    renewer = threading.Thread(target=renew, name=f"lease-{key}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        try:
            client.delete_object(Bucket=bucket, Key=key, IfMatch=current["etag"])
        except ClientError:
            pass  # expired and taken over meanwhile: the lease is not ours to delete


def location_lock(where: Location, timeout_s: float, what: str) -> AbstractContextManager:
    """An exclusive lock named by `where`: a lease object there on S3, a `flock` of that file
    on a local folder."""
    if where.is_s3:
        return s3_lease(where.s3.boto3, where.bucket, where.key, timeout_s=timeout_s, what=what)
    return file_lock(where.path, timeout_s, what=what)


def verify_conditional_put(client: Any, bucket: str, prefix: str, endpoint: str | None) -> None:
    """Delta and LanceDB commit by creating the next log entry with ``If-None-Match: *``; they are
    only safe where the endpoint refuses a second such PUT. Probe it once per home and endpoint
    (a marker remembers a passed probe) and refuse the home if the endpoint accepts both."""
    from botocore.exceptions import ClientError

    base = f"{prefix}/.asset-pipeline" if prefix else ".asset-pipeline"
    tag = hashlib.sha256((endpoint or "aws").encode()).hexdigest()[:12]
    marker = f"{base}/conditional-put-ok-{tag}"
    try:
        client.head_object(Bucket=bucket, Key=marker)
        return
    except ClientError as exc:
        if not _missing(exc):
            raise
    probe = f"{base}/conditional-put-probe-{uuid.uuid4().hex}"
    client.put_object(Bucket=bucket, Key=probe, Body=b"1", IfNoneMatch="*")
    try:
        client.put_object(Bucket=bucket, Key=probe, Body=b"2", IfNoneMatch="*")
    except ClientError as exc:
        if not _precondition_failed(exc):
            raise
        client.put_object(Bucket=bucket, Key=marker, Body=b"conditional PUT refused a second writer")
        return
    finally:
        client.delete_object(Bucket=bucket, Key=probe)
    raise UnsafeStore(f"s3://{bucket}/{prefix}: the endpoint {endpoint or 'AWS'} accepted a second PUT with "
                      "If-None-Match: * — Delta and LanceDB commits would silently lose concurrent writes. Use an "
                      "endpoint that supports conditional writes (AWS S3, MinIO, Cloudflare R2, GCS via its XML API) "
                      "or remove the proxy that drops the header")
