"""Resources: the home (local or S3 through dagster-aws's S3Resource)."""


from dataclasses import replace

import dagster as dg
from dagster_aws.s3 import S3Resource

from asset_pipeline.formats import DEFAULT_MAX_IMAGE_PIXELS
from asset_pipeline.home import Home
from asset_pipeline.settings import Settings


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
    workers: int = 2
    presign_expiry_s: int = 3600
    multipart_threshold_bytes: int = 64 * 1024 * 1024
    progress: bool = False  # print a progress line on stderr (the CLI sets it on a terminal)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # images declaring more pixels are refused undecoded
    allow_trailing_bytes: bool = False  # accept bytes after an image's end
    s3: S3Resource = S3Resource()

    @classmethod
    def from_settings(cls, settings: Settings, progress: bool = False) -> "PipelineHome":
        return cls(
            home=settings.home.uri, inbox=settings.inbox, store=settings.store, archive=settings.archive,
            replica=settings.replica, durable=settings.durable,
            workers=settings.workers, presign_expiry_s=settings.presign_expiry_s,
            multipart_threshold_bytes=settings.multipart_threshold_bytes, progress=progress,
            max_image_pixels=settings.max_image_pixels, allow_trailing_bytes=settings.allow_trailing_bytes,
            s3=S3Resource(endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region),
        )

    def settings(self) -> Settings:
        # Signing keys and trust anchors are secrets: they come from the environment of the process
        # that runs the step (Settings.from_env), never from run config.
        env = Settings.from_env(self.home)
        return replace(env, inbox=self.inbox, store=self.store, archive=self.archive, replica=self.replica,
                       s3_endpoint_url=self.s3.endpoint_url, s3_region=self.s3.region_name,
                       presign_expiry_s=self.presign_expiry_s, multipart_threshold_bytes=self.multipart_threshold_bytes,
                       durable=self.durable, workers=self.workers, max_image_pixels=self.max_image_pixels,
                       allow_trailing_bytes=self.allow_trailing_bytes)

    def open(self) -> Home:
        settings = self.settings()
        needs_s3 = (settings.home.is_s3 or settings.store_is_s3 or settings.inbox_is_s3 or settings.archive != "local"
                    or bool(settings.replica))
        return Home(settings, s3_client=self.s3.get_client() if needs_s3 else None)


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
