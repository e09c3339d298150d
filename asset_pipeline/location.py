"""Where state lives: a local folder or an ``s3://bucket/prefix``, and how each library reaches it.

`Location` is the one place that turns a URI plus the environment into what deltalake, LanceDB,
DuckDB, pyarrow.fs and boto3 need. It offers the few file operations the pipeline performs on
small files (configuration, usage logs, quarantined inputs, report snapshots) through pyarrow's
filesystem layer, so the same code runs on a laptop and against object storage.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from asset_pipeline.errors import LocationError
from asset_pipeline.names import shown
from asset_pipeline.sql_literals import string_literal

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Access:
    """How to reach S3 (or an S3-compatible endpoint): the endpoint and region from the
    environment, credentials through boto3's usual chain, resolved once per process."""

    endpoint_url: str | None = None
    region: str | None = None
    client: Any = field(default=None, compare=False, repr=False)  # a boto3 client to reuse (dagster-aws)

    @cached_property
    def _credentials(self) -> tuple[str, str, str | None] | None:
        import boto3

        creds = boto3.Session().get_credentials()
        if creds is None:
            return None
        frozen = creds.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    @cached_property
    def boto3(self) -> Any:
        if self.client is not None:
            return self.client
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)

    @property
    def allow_http(self) -> bool:
        return bool(self.endpoint_url and self.endpoint_url.startswith("http://"))

    def delta_options(self) -> dict[str, str]:
        """deltalake (object_store) options. Commits use conditional PUT (`If-None-Match: *`), the
        default in deltalake 1.x and safe only where the endpoint honours it (see `verify`)."""
        opts = {"conditional_put": "etag"}
        if self.endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.allow_http:
            opts["AWS_ALLOW_HTTP"] = "true"
        if self.region:
            opts["AWS_REGION"] = self.region
        if self._credentials:
            key, secret, token = self._credentials
            opts |= {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
            if token:
                opts["AWS_SESSION_TOKEN"] = token
        return opts

    def lance_options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        if self.endpoint_url:
            opts["endpoint"] = self.endpoint_url
        if self.allow_http:
            opts["allow_http"] = "true"
        if self.region:
            opts["region"] = self.region
        if self._credentials:
            key, secret, token = self._credentials
            opts |= {"aws_access_key_id": key, "aws_secret_access_key": secret}
            if token:
                opts["aws_session_token"] = token
        return opts

    def arrow_fs(self) -> Any:
        import pyarrow.fs as pafs

        kwargs: dict[str, Any] = {"region": self.region or "us-east-1"}
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            kwargs |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
        if self._credentials:
            key, secret, token = self._credentials
            kwargs |= {"access_key": key, "secret_key": secret, "session_token": token}
        return pafs.S3FileSystem(**kwargs)

    def duckdb_secret_sql(self) -> str:
        """A DuckDB secret so that httpfs (and delta_scan) read this endpoint."""
        parts = ["type s3"]
        if self._credentials:
            key, secret, token = self._credentials
            parts += [f"key_id {string_literal(key)}", f"secret {string_literal(secret)}"]
            if token:
                parts.append(f"session_token {string_literal(token)}")
        if self.region:
            parts.append(f"region {string_literal(self.region)}")
        if self.endpoint_url:
            scheme, _, host = self.endpoint_url.partition("://")
            parts += [f"endpoint {string_literal(host.rstrip('/'))}", "url_style 'path'",
                      f"use_ssl {'false' if scheme == 'http' else 'true'}"]
        return f"create or replace secret asset_pipeline_s3 ({', '.join(parts)})"


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    mtime_ns: int


def _require_utf8(path: str, what: str) -> str:
    """`path`, if it is valid UTF-8 (the tables record paths as text); a relative path or `~` is
    checked again once made absolute (the working folder or $HOME may not be)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise LocationError(f"{what} {shown(path)!r} is not valid UTF-8 (its bad bytes shown escaped): the "
                            "tables record paths as text; use a folder whose name is UTF-8") from None
    return path


@dataclass(frozen=True)
class Location:
    """A folder, local (`uri` is an absolute path) or on S3 (`s3://bucket/prefix`)."""

    uri: str
    s3: S3Access | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str | os.PathLike[str], s3: S3Access | None = None, what: str = "home") -> Location:
        """Validate `text`; any scheme other than s3:// (or a malformed s3:// URI) is an error,
        never a local folder with a strange name."""
        raw = os.fspath(text).strip()
        if not raw:
            raise LocationError(f"{what} is empty")
        _require_utf8(raw, what)
        scheme, sep, rest = raw.partition("://")
        if not sep:
            if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", raw):
                raise LocationError(f"{what} {raw!r} looks like a URI without '//': use s3://bucket/prefix "
                                    "or a local folder")
            return cls(_require_utf8(str(Path(raw).expanduser().absolute()), what))
        if scheme == "file":
            return cls(_require_utf8(str(Path(rest).expanduser().absolute()), what))
        if scheme != "s3":
            hint = (" (Google Cloud Storage: use its S3-interoperable endpoint, "
                    "AWS_ENDPOINT_URL=https://storage.googleapis.com with HMAC keys, and s3://bucket/prefix)"
                    if scheme in ("gs", "gcs") else "")
            raise LocationError(f"{what} {raw!r}: scheme {scheme!r} is not supported; use a local folder or "
                                f"s3://bucket/prefix{hint}")
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise LocationError(f"{what} {raw!r}: {bucket!r} is not a valid S3 bucket name")
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts) or "\\" in prefix or "\x00" in prefix or "//" in prefix.strip("/"):
            raise LocationError(f"{what} {raw!r}: the prefix must be plain folder names")
        return cls("s3://" + "/".join([bucket, *parts]), s3 or S3Access())

    # --- shape -----------------------------------------------------------------------------------
    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def bucket(self) -> str:
        return self.uri[5:].partition("/")[0]

    @property
    def key(self) -> str:
        """The prefix inside the bucket ('' at the bucket's root)."""
        return self.uri[5:].partition("/")[2]

    @property
    def path(self) -> Path:
        if self.is_s3:
            raise LocationError(f"{self.uri} is on S3, not a local folder")
        return Path(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        return Location(self.uri.rstrip("/").rsplit("/", 1)[0], self.s3)

    def __truediv__(self, part: str) -> Location:
        part = str(part).strip("/")
        return Location(f"{self.uri.rstrip('/')}/{part}" if part else self.uri, self.s3)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.uri

    # --- small-file operations (pyarrow.fs) -------------------------------------------------------
    def _fs(self) -> tuple[Any, str]:
        if self.is_s3:
            return self.s3.arrow_fs(), self.uri[5:]
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), self.uri

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        fs, p = self._fs()
        return fs.get_file_info(p).type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        fs, p = self._fs()
        return fs.get_file_info(p).type == pafs.FileType.File

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """A folder for a local location; object stores have no folders to make."""
        if not self.is_s3:
            self.path.mkdir(parents=parents, exist_ok=exist_ok)

    def read_bytes(self) -> bytes:
        if not self.is_s3:
            return self.path.read_bytes()
        fs, p = self._fs()
        try:
            with fs.open_input_stream(p) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "does not exist" in str(exc) or "NoSuchKey" in str(exc) or "Path does not exist" in str(exc):
                raise FileNotFoundError(self.uri) from exc
            raise

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Replace the file as a whole: a reader sees the old content or the new, never a mix
        (a temp file renamed locally; one PUT on S3)."""
        if not self.is_s3:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return
        fs, p = self._fs()
        with fs.open_output_stream(p) as f:
            f.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def list(self, suffixes: tuple[str, ...] = ()) -> list[FileEntry]:
        """Files directly in this folder (not hidden ones), sorted by name."""
        import pyarrow.fs as pafs

        fs, p = self._fs()
        infos = fs.get_file_info(pafs.FileSelector(p, recursive=False, allow_not_found=True))
        out = [FileEntry(i.base_name, i.size or 0, int(i.mtime_ns or 0)) for i in infos
               if i.type == pafs.FileType.File and not i.base_name.startswith(".")
               and (not suffixes or i.base_name.endswith(suffixes))]
        return sorted(out, key=lambda e: e.name)

    def walk_files(self) -> Iterator[str]:
        """Relative paths of every file below this folder."""
        import pyarrow.fs as pafs

        fs, p = self._fs()
        base = p.rstrip("/") + "/"
        for info in fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True)):
            if info.type == pafs.FileType.File:
                yield info.path[len(base):]

    def unlink(self, missing_ok: bool = False) -> None:
        fs, p = self._fs()
        try:
            fs.delete_file(p)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def move_to(self, dest: Location) -> None:
        """Rename locally; copy then delete on S3 (the copy is complete before the original goes)."""
        if not self.is_s3 and not dest.is_s3:
            dest.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.path, dest.path)
            return
        self.copy_to(dest)
        self.unlink(missing_ok=True)

    def copy_to(self, dest: Location) -> None:
        import pyarrow.fs as pafs

        src_fs, src = self._fs()
        dst_fs, dst = dest._fs()
        if not dest.is_s3:
            dest.path.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)

    def upload(self, local: Path) -> None:
        """Put a local file here (this location names the file)."""
        Location(str(Path(local).absolute())).copy_to(self)

    def download(self, local: Path) -> None:
        self.copy_to(Location(str(Path(local).absolute())))

    def modified(self) -> datetime | None:
        import pyarrow.fs as pafs

        fs, p = self._fs()
        info = fs.get_file_info(p)
        return None if info.type == pafs.FileType.NotFound else info.mtime
