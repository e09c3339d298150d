"""Loading open_clip models from configuration, with no silent fallback to untrained weights.

A model is named ``MODEL:PRETRAINED`` — an open_clip architecture and either a pretrained tag
(``ViT-B-32:laion2b_s34b_b79k``, fetched to the Hugging Face cache on first use) or a local
checkpoint path (``ViT-B-32:/models/clip.pt``). ``tiny-test`` is a deliberately tiny architecture
with random weights for tests and offline smoke runs; everything it produces is labelled
``test model, random weights``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from asset_pipeline.errors import ModelUnavailable

ENV_VAR = "ASSET_PIPELINE_CLIP_MODEL"
DEFAULT_MODEL = "ViT-B-32:laion2b_s34b_b79k"
TINY_TEST = "tiny-test"
TINY_ARCH = "asset-pipeline-tiny-test"
TEST_LABEL = "test model, random weights"
_TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@dataclass(frozen=True)
class ModelSpec:
    architecture: str
    pretrained: str | None  # tag, local checkpoint path, or None (tiny test model only)
    name: str               # as configured

    @property
    def is_test_model(self) -> bool:
        return self.name == TINY_TEST

    @property
    def checkpoint(self) -> Path | None:
        if self.pretrained and (os.sep in self.pretrained or self.pretrained.endswith((".pt", ".bin", ".safetensors"))):
            return Path(self.pretrained).expanduser()
        return None

    @property
    def model_id(self) -> str:
        """Recorded on every embedding row: a different id means a different vector space.
        A local checkpoint is identified by its content, not its path — hashed once per process
        and file stamp (`checkpoint_digest`), not on every access (a 600 MB checkpoint takes
        about a second to hash)."""
        if self.is_test_model:
            return TINY_TEST
        ckpt = self.checkpoint
        if ckpt is not None:
            from asset_pipeline.filestamp import FileStamp

            stamp = FileStamp.read(ckpt, follow_symlinks=True)
            if stamp is None:
                raise ModelUnavailable(f"checkpoint {ckpt} for {self.architecture} does not exist")
            return f"{self.architecture}:sha256-{checkpoint_digest(str(ckpt), stamp)[:16]}"
        return f"{self.architecture}:{self.pretrained}"

    @property
    def label(self) -> str:
        """How results name the model; the test model always says it has random weights."""
        return f"{TINY_TEST} ({TEST_LABEL})" if self.is_test_model else self.model_id


@lru_cache(maxsize=32)
def checkpoint_digest(path: str, stamp: object) -> str:
    """sha256 of a checkpoint file. Memoised on (path, stamp): the stamp (device, inode, size,
    mtime_ns, ctime_ns) changes whenever the file may have, so a rewritten checkpoint is hashed
    again and an unchanged one never is."""
    from asset_pipeline.hashing import hash_file

    return hash_file(path)[0]


def parse_model(value: str | None = None) -> ModelSpec:
    """``MODEL:PRETRAINED`` or ``tiny-test``; defaults to $ASSET_PIPELINE_CLIP_MODEL, then ViT-B-32."""
    value = (value or os.environ.get(ENV_VAR) or DEFAULT_MODEL).strip()
    if value == TINY_TEST:
        return ModelSpec(TINY_ARCH, None, TINY_TEST)
    arch, sep, pretrained = value.partition(":")
    if not sep or not arch or not pretrained:
        raise ModelUnavailable(
            f"model {value!r} is not MODEL:PRETRAINED (e.g. {DEFAULT_MODEL!r}, 'ViT-B-32:/path/to/checkpoint.pt') "
            f"or {TINY_TEST!r}; set it in the embedder config or ${ENV_VAR}")
    return ModelSpec(arch, pretrained, value)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def import_open_clip() -> Any:
    """open_clip, with one warning dropped: importing it pulls in `tqdm.auto`, which in a notebook
    without ipywidgets warns that it cannot draw progress bars — we never show one."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import open_clip
    return open_clip


@lru_cache(maxsize=1)
def _register_tiny_config() -> None:
    open_clip = import_open_clip()

    # open_clip reads the file into its registry at once (later rescans keep the entry), so the
    # folder goes right away instead of piling up in the temp folder, one per process.
    with tempfile.TemporaryDirectory(prefix="asset-pipeline-clip-") as tmp:
        (Path(tmp) / f"{TINY_ARCH}.json").write_text(json.dumps(_TINY_CONFIG))
        open_clip.add_model_config(tmp)


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    precision: str
    dim: int
    model_id: str

    @property
    def label(self) -> str:
        """How results name the model; the test model always says it has random weights."""
        return f"{TINY_TEST} ({TEST_LABEL})" if self.spec.is_test_model else self.model_id

    def encode_images(self, batch: Any) -> Any:
        """L2-normalised image embeddings of a preprocessed batch (N, C, H, W)."""
        import torch

        with torch.no_grad(), self._autocast():
            out = self.model.encode_image(batch.to(self.device, non_blocking=True))
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu()

    def encode_texts(self, texts: list[str]) -> Any:
        import torch

        with torch.no_grad(), self._autocast():
            out = self.model.encode_text(self.tokenizer(texts).to(self.device))
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu()

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda") and self.precision in ("amp", "amp_bf16", "amp_bfloat16"):
            return torch.autocast("cuda", dtype=torch.bfloat16 if "bf" in self.precision else torch.float16)
        return contextlib.nullcontext()


@contextlib.contextmanager
def _open_clip_logging(spec: ModelSpec) -> Iterator[None]:
    """open_clip logs through the root logger's module functions, which configure the root logger
    as a side effect (every later Dagster log line would then print twice). A no-op handler keeps
    the root logger unconfigured; the tiny model's "No pretrained weights loaded" notice is dropped
    because its results carry the test-model label instead."""
    root = logging.getLogger()
    guard = logging.NullHandler()

    def keep(record: logging.LogRecord) -> bool:
        return not (spec.is_test_model and record.getMessage().startswith("No pretrained weights loaded"))

    root.addHandler(guard)
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
        root.removeHandler(guard)


def _unavailable(spec: ModelSpec, why: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"cannot load embedding model {spec.name}: {why}. Fix: {ENV_VAR}={spec.architecture}:/path/to/"
        f"open_clip_pytorch_model.bin (a local checkpoint), run once with network access to cache the weights, "
        f"or {ENV_VAR}={TINY_TEST} for a smoke run (random weights)")


def load_model(spec: ModelSpec, device: str = "auto", precision: str = "fp32") -> LoadedModel:
    """Load through open_clip's own factory; raise ModelUnavailable with a fix when weights are
    missing — at once when they are not cached and cannot be downloaded from here."""
    import torch

    open_clip = import_open_clip()

    from asset_pipeline.embeddings.weights import unavailable_reason

    device = resolve_device(device)
    if spec.is_test_model:
        _register_tiny_config()
        torch.manual_seed(0)  # the same random weights in every process, so results are comparable
    elif spec.architecture not in open_clip.list_models():
        raise ModelUnavailable(f"open_clip has no model architecture {spec.architecture!r}; "
                               f"see open_clip.list_models()")
    ckpt = spec.checkpoint
    if ckpt is not None and not ckpt.is_file():
        raise ModelUnavailable(f"checkpoint {ckpt} for {spec.architecture} does not exist; point ${ENV_VAR} at "
                               f"an open_clip checkpoint file ('{spec.architecture}:/path/to/weights.pt')")
    if spec.pretrained and ckpt is None and (why := unavailable_reason(spec.architecture, spec.pretrained)):
        raise _unavailable(spec, why)
    with _open_clip_logging(spec):
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.architecture, pretrained=spec.pretrained, device=device, precision=precision)
        except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors for missing weights
            raise _unavailable(spec, " ".join(f"weights {spec.pretrained!r} failed to load: {exc}".split())) from exc
        tokenizer = open_clip.get_tokenizer(spec.architecture)
    model.eval()
    with torch.no_grad():
        dim = int(model.encode_text(tokenizer(["probe"]).to(device)).shape[-1])
    return LoadedModel(spec, model, preprocess, tokenizer, device, precision, dim, spec.model_id)
