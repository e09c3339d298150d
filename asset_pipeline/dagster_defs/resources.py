"""Resources: the home (local or S3) and the embedding model.

The S3 endpoint and region are plain fields and the home makes its boto3 client when it first
needs one: a nested dagster-aws `S3Resource` costs about 0.7 s of imports in every run, S3 or not.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from asset_pipeline.settings import Settings

if TYPE_CHECKING:
    from asset_pipeline.home import Home


class PipelineHome(dg.ConfigurableResource):
    """Where state lives. `store` is 'local' or s3://bucket/prefix; `inbox` a folder or s3:// URI."""

    home: str
    inbox: str
    store: str = "local"
    durable: bool = True
    inbox_mode: str = "consume"
    ingest_batch_files: int = 10_000
    workers: int = 2
    presign_expiry_s: int = 3600
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    progress: bool = False  # print a progress line on stderr (the CLI sets it on a terminal)
    s3_endpoint_url: str | None = None
    s3_region: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = False) -> "PipelineHome":
        return cls(
            home=str(settings.home), inbox=settings.inbox, store=settings.store, durable=settings.durable,
            inbox_mode=settings.inbox_mode, ingest_batch_files=settings.ingest_batch_files,
            workers=settings.workers, presign_expiry_s=settings.presign_expiry_s,
            multipart_threshold_bytes=settings.multipart_threshold_bytes, progress=progress,
            s3_endpoint_url=settings.s3_endpoint_url, s3_region=settings.s3_region,
        )

    def settings(self) -> Settings:
        return Settings(
            home=Path(self.home), inbox=self.inbox, store=self.store, s3_endpoint_url=self.s3_endpoint_url,
            s3_region=self.s3_region, presign_expiry_s=self.presign_expiry_s,
            multipart_threshold_bytes=self.multipart_threshold_bytes, durable=self.durable, workers=self.workers,
            inbox_mode=self.inbox_mode, ingest_batch_files=self.ingest_batch_files,
        )

    def open(self) -> "Home":
        from asset_pipeline.home import Home  # here: the home pulls in the ingest modules

        return Home(self.settings())


class ClipEmbedder(dg.ConfigurableResource):
    """open_clip model for the embedding job. `model` is MODEL:PRETRAINED (tag or local checkpoint
    path) or 'tiny-test'; $ASSET_PIPELINE_CLIP_MODEL overrides it. `device`: auto (CUDA when
    present), cpu, cuda, cuda:1 … `precision`: fp32, fp16, bf16, amp, amp_bf16."""

    model: str = "ViT-B-32:laion2b_s34b_b79k"
    device: str = "auto"
    batch_size: int = 64
    precision: str = "fp32"
    num_workers: int = 2
    near_duplicate_threshold: float = 0.95

    def spec(self):
        import os

        from asset_pipeline.embeddings.model import ENV_VAR, parse_model

        return parse_model(os.environ.get(ENV_VAR) or self.model)

    def load(self):
        from asset_pipeline.embeddings.model import load_model

        return load_model(self.spec(), self.device, self.precision)
