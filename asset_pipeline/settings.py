"""Where all state lives, read once from the environment.

One `Settings` value is shared by the CLI, the Dagster resources and `Catalog`, so the three
always agree on the home, the inbox and the object store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date

from asset_pipeline.errors import ConfigError
from asset_pipeline.formats import DEFAULT_MAX_IMAGE_PIXELS, ValidationLimits
from asset_pipeline.location import Location, LocationError, S3Access

DEFAULT_HOME = "data"
INBOX_MODES = ("consume", "keep")


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI has no bucket: {uri!r}")
    return bucket, prefix.strip("/")


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number above 0, got {raw!r}")
    return value


def _flag(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1/true/yes/on or 0/false/no/off, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Locations of the home (tables, quarantine, local objects), the inbox and the store.

    `store` is ``"local"`` (blobs under ``<home>/objects``) or an ``s3://bucket/prefix`` URI.
    `inbox` is a local folder or an ``s3://bucket/prefix`` URI.
    """

    home: Location  # a local folder or s3://bucket/prefix (a str or Path is accepted and parsed)
    inbox: str = ""  # default: <home>/inbox
    store: str = "local"  # "local": <home>/objects (on S3 when the home is); or s3://bucket/prefix
    archive: str = "local"  # "local" (<home>/archive) or s3://bucket/prefix
    replica: str | None = None  # s3://bucket/prefix: every blob of a local store is copied there too
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    presign_expiry_s: int = 3600
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    durable: bool = True
    # consume: committed inputs leave the inbox (hard-linked into the store on its filesystem,
    # no copy); keep: the inbox is never touched (a watch folder another tool owns), re-scans use
    # the hash cache under <home>/cache.
    inbox_mode: str = "consume"
    ingest_batch_files: int = 10_000  # inputs per commit: bounds memory whatever the inbox holds
    commit_retries: int = 12  # attempts of a Delta commit that keeps losing to concurrent writers
    embed_shards: int = 1  # the embedding job's fan-out: steps (pods, workers) that embed at once
    workers: int = field(default_factory=lambda: max(2, min(8, os.cpu_count() or 2)))
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # declared size checked before an image is decoded
    allow_trailing_bytes: bool = False  # accept bytes after an image's end (a ZIP appended to a PNG)
    # Content credentials on export (issue 14): a PEM certificate chain (leaf first) and its key
    # sign a C2PA manifest into every exported copy; trust anchors (PEM) judge signers when reading.
    c2pa_sign_cert: str | None = None
    c2pa_sign_key: str | None = None
    c2pa_sign_alg: str = "es256"
    c2pa_tsa_url: str | None = None
    c2pa_trust_anchors: str | None = None
    # First day of the daily partitions (usage reports, retention sweeps), YYYY-MM-DD. Unset: 30
    # days before the home's creation (dagster_defs/partitions.py).
    partitions_start: str | None = None
    owners: tuple[str, ...] = ("team:asset-pipeline",)  # Dagster asset owners: emails or team:NAME
    # Where the steps of a run execute (issue 12): "default" (every step in the run's process),
    # "celery" (every step on dagster-celery workers; broker and result backend at
    # `celery_broker`), "k8s" (the embedding job's steps in pods of their own).
    executor: str = "default"
    celery_broker: str = "redis://127.0.0.1:6379/0"

    def __post_init__(self) -> None:
        """Every URI is checked here, once: a typo is a clear error, never a folder named
        ``s3:`` under the current directory."""
        s3 = S3Access(self.s3_endpoint_url, self.s3_region)
        home = Location.parse(self.home.uri if isinstance(self.home, Location) else self.home, s3, "home")
        object.__setattr__(self, "home", home)
        object.__setattr__(self, "inbox", (Location.parse(self.inbox, s3, "inbox") if self.inbox
                                           else home / "inbox").uri)
        for name in ("store", "archive"):
            value = getattr(self, name)
            if value != "local":
                Location.parse(value, s3, name)
        if self.replica:
            replica = Location.parse(self.replica, s3, "replica")
            if not replica.is_s3:
                raise LocationError(f"replica {self.replica!r} must be an s3:// URI")
            if home.is_s3 or self.store != "local":
                raise LocationError("a replica copies a local store: the home and the store must be local")
        if self.partitions_start is not None:
            try:
                date.fromisoformat(self.partitions_start)
            except ValueError:
                raise ConfigError(f"partitions start must be a date (YYYY-MM-DD), got {self.partitions_start!r} "
                                  "(ASSET_PIPELINE_PARTITIONS_START)") from None
        for owner in self.owners:
            if not (owner.startswith("team:") and len(owner) > 5) and "@" not in owner:
                raise ConfigError(f"owner {owner!r} must be an email or team:NAME (ASSET_PIPELINE_OWNERS)")
        if self.inbox_mode not in INBOX_MODES:
            raise ConfigError(f"inbox mode must be one of {', '.join(INBOX_MODES)}, got {self.inbox_mode!r} "
                              "(ASSET_PIPELINE_INBOX_MODE)")

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
        """Read ``ASSET_PIPELINE_HOME`` / ``_INBOX`` / ``_STORE`` / ``_ARCHIVE`` / ``_REPLICA``, the
        validation knobs ``_MAX_IMAGE_PIXELS`` and ``_ALLOW_TRAILING_BYTES`` (plus the AWS endpoint
        and region)."""
        settings = cls(
            home=home or os.environ.get("ASSET_PIPELINE_HOME") or DEFAULT_HOME,
            inbox=os.environ.get("ASSET_PIPELINE_INBOX") or "",
            store=os.environ.get("ASSET_PIPELINE_STORE", "local"),
            archive=os.environ.get("ASSET_PIPELINE_ARCHIVE", "local"),
            replica=os.environ.get("ASSET_PIPELINE_REPLICA") or None,
            embed_shards=int(os.environ.get("ASSET_PIPELINE_EMBED_SHARDS") or 1),
            inbox_mode=os.environ.get("ASSET_PIPELINE_INBOX_MODE") or "consume",
            s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            s3_region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
            max_image_pixels=_positive_int("ASSET_PIPELINE_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
            allow_trailing_bytes=_flag("ASSET_PIPELINE_ALLOW_TRAILING_BYTES"),
            c2pa_sign_cert=os.environ.get("ASSET_PIPELINE_C2PA_CERT") or None,
            c2pa_sign_key=os.environ.get("ASSET_PIPELINE_C2PA_KEY") or None,
            c2pa_sign_alg=os.environ.get("ASSET_PIPELINE_C2PA_ALG") or "es256",
            c2pa_tsa_url=os.environ.get("ASSET_PIPELINE_C2PA_TSA_URL") or None,
            c2pa_trust_anchors=os.environ.get("ASSET_PIPELINE_C2PA_TRUST_ANCHORS") or None,
            executor=os.environ.get("ASSET_PIPELINE_EXECUTOR") or "default",
            celery_broker=os.environ.get("ASSET_PIPELINE_CELERY_BROKER") or "redis://127.0.0.1:6379/0",
            partitions_start=os.environ.get("ASSET_PIPELINE_PARTITIONS_START") or None,
            owners=tuple(o.strip() for o in (os.environ.get("ASSET_PIPELINE_OWNERS") or "team:asset-pipeline")
                         .split(",") if o.strip()),
        )
        if "inbox" not in overrides and "home" in overrides and not os.environ.get("ASSET_PIPELINE_INBOX"):
            overrides = {**overrides, "inbox": ""}  # follows the new home
        return replace(settings, **overrides) if overrides else settings

    def validation_limits(self) -> ValidationLimits:
        """What format validation accepts; handed to the ingest's workers."""
        return ValidationLimits(self.max_image_pixels, self.allow_trailing_bytes)

    @property
    def s3(self) -> S3Access:
        return self.home.s3 or S3Access(self.s3_endpoint_url, self.s3_region)

    # Locations derived from the home; kept here so every component uses the same layout.
    @property
    def objects_dir(self) -> Location:
        return self.home / "objects"

    @property
    def tables_dir(self) -> Location:
        return self.home / "tables"

    @property
    def lancedb_dir(self) -> Location:
        return self.home / "lancedb"

    @property
    def quarantine_dir(self) -> Location:
        return self.home / "quarantine"

    @property
    def consumes_inbox(self) -> bool:
        return self.inbox_mode == "consume"

    @property
    def usage_inbox(self) -> Location:
        return self.home / "usage_inbox"

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
    def archive_dir(self) -> Location:
        return self.home / "archive"

    @property
    def retention_file(self) -> Location:
        return self.home / "retention.yaml"
