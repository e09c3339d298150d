"""Resources: the home (local or S3) and the embedding model.

The S3 endpoint and region are plain fields and the home makes its boto3 client when it first
needs one: a nested dagster-aws `S3Resource` costs about 0.7 s of imports in every run, S3 or not.
"""

from dataclasses import replace
from typing import TYPE_CHECKING

import dagster as dg

from asset_pipeline.formats import DEFAULT_MAX_IMAGE_PIXELS
from asset_pipeline.settings import Settings

if TYPE_CHECKING:
    from asset_pipeline.home import Home


class PipelineHome(dg.ConfigurableResource):
    """Where state lives. `home` is a folder or s3://bucket/prefix; `store` and `archive` are
    'local' (inside the home) or s3://bucket/prefix; `inbox` a folder or s3:// URI; `replica` an
    s3:// URI that every blob of a local store is copied to."""

    home: str
    inbox: str
    store: str = "local"
    archive: str = "local"
    replica: str | None = None
    durable: bool = True
    inbox_mode: str = "consume"  # consume | keep (see Settings)
    ingest_batch_files: int = 10_000
    workers: int = 2
    presign_expiry_s: int = 3600
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    progress: bool = False  # print a progress line on stderr (the CLI sets it on a terminal)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # images declaring more pixels are refused undecoded
    allow_trailing_bytes: bool = False  # accept bytes after an image's end
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = False) -> "PipelineHome":
        return cls(
            home=settings.home.uri, inbox=settings.inbox, store=settings.store, archive=settings.archive,
            replica=settings.replica, durable=settings.durable, inbox_mode=settings.inbox_mode,
            ingest_batch_files=settings.ingest_batch_files, workers=settings.workers,
            presign_expiry_s=settings.presign_expiry_s,
            multipart_threshold_bytes=settings.multipart_threshold_bytes, progress=progress,
            max_image_pixels=settings.max_image_pixels, allow_trailing_bytes=settings.allow_trailing_bytes,
            s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region,
        )

    def settings(self) -> Settings:
        # Signing keys and trust anchors are secrets: they come from the environment of the process
        # that runs the step (Settings.from_env), never from run config.
        env = Settings.from_env(self.home)
        return replace(env, inbox=self.inbox, store=self.store, archive=self.archive, replica=self.replica,
                       s3_endpoint_url=self.s3_endpoint_url, s3_region=self.s3_region, inbox_mode=self.inbox_mode,
                       ingest_batch_files=self.ingest_batch_files,
                       presign_expiry_s=self.presign_expiry_s, multipart_threshold_bytes=self.multipart_threshold_bytes,
                       durable=self.durable, workers=self.workers, max_image_pixels=self.max_image_pixels,
                       allow_trailing_bytes=self.allow_trailing_bytes)

    def open(self) -> "Home":
        from asset_pipeline.home import Home  # here: the home pulls in the ingest modules

        return Home(self.settings())


class ClipEmbedder(dg.ConfigurableResource):
    """open_clip model for the embedding job. `model` is MODEL:PRETRAINED (tag or local checkpoint
    path) or 'tiny-test'; unset, the home's recorded model (the one its tables were built with),
    else ViT-B-32. $ASSET_PIPELINE_CLIP_MODEL overrides it. `device`: auto (CUDA when present),
    cpu, cuda, cuda:1 … `precision`: fp32, fp16, bf16, amp, amp_bf16."""

    model: str | None = None
    device: str = "auto"
    batch_size: int = 64
    precision: str = "fp32"
    num_workers: int = 2
    near_duplicate_threshold: float = 0.95

    def choose(self, lancedb):
        """The model to use on this home, and why (see `asset_pipeline.embeddings.choice`)."""
        from asset_pipeline.embeddings.choice import choose_model

        return choose_model(lancedb, configured=self.model)

    def load(self, spec):
        from asset_pipeline.embeddings.model import load_model

        return load_model(spec, self.device, self.precision)
