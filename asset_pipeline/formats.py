"""Content-based format detection and validation.

The format comes from the bytes, never from the file name: a `.png` that holds a JPEG is a JPEG,
and a file nobody recognises is rejected instead of being stored as an opaque blob. What is
accepted is decoded, within bounds, so that a header cannot promise what the data does not hold:
images are decoded in full (after their declared size is checked against a pixel limit, before
any pixel is allocated) and must end where their structure ends; audio and video streams are
demuxed and checked against what their headers declare; model and array headers are checked
against the file's size. A 100 GB model still costs a header read here (its tensors are not
decoded). A small file the ingest already holds in memory is inspected from those bytes
(`Source`), so it is read from disk once for hashing, checking and storing together.
"""

from __future__ import annotations

import functools
import io
import json
import math
import struct
import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from asset_pipeline.errors import InputRejected

ASSET_TYPES = ("image", "video", "audio", "embedding", "model", "prompt")
_JSON_PROMPT_MAX = 16 * 1024 * 1024

Source = Path | bytes  # a file, or the whole content of one already read

# Pillow's own MAX_IMAGE_PIXELS (about 0.25 GiB of 24-bit pixels); Pillow refuses to open images
# above twice this whatever our limit says, so a higher setting stops there.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


@dataclass(frozen=True)
class ValidationLimits:
    """What validation decodes and accepts; built from `Settings` (ASSET_PIPELINE_MAX_IMAGE_PIXELS,
    ASSET_PIPELINE_ALLOW_TRAILING_BYTES) and passed to the workers explicitly."""

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # per image; all frames of an animation together
    allow_trailing_bytes: bool = False  # bytes after an image's end (a ZIP appended to a PNG) refused by default

    @property
    def checks(self) -> str:
        """What decides a rejection besides the input: these limits, the package's own code and
        its decoders' releases. The hash cache remembers a kept inbox's rejects under it, so a
        changed limit, a deployed fix or an upgrade that may admit them has them examined again."""
        return f"{_validators()}; {self!r}"


# The libraries whose verdicts on an input can refuse it (images, video and audio, arrays, model
# files, XMP packets): distribution name -> the module that carries its `__version__`.
DECODERS = {"pillow": "PIL", "av": "av", "numpy": "numpy", "safetensors": "safetensors", "defusedxml": "defusedxml"}


def _decoder_version(distribution: str) -> str:
    """The release this process runs: the loaded module's own version once it is imported (an
    upgrade installed under a running process changes the metadata, not the loaded code), else
    the installed one, which is what an import will load."""
    module = sys.modules.get(DECODERS[distribution])
    loaded = getattr(module, "__version__", None) if module is not None else None
    if isinstance(loaded, str):
        return loaded
    from importlib.metadata import version

    return version(distribution)


@functools.cache
def _validators() -> str:
    """This package's version and source digest (`loaded_code`) and the decoders' releases: 4-10
    ms, once a process. A kept inbox's ingest takes it as it starts, so a deploy during a run
    cannot label the rejects of the code it started with as the new code's (the reverse only
    costs a re-check). Where the package's files changed after this process imported them, the
    label is one no other process gives: what this process refuses is examined again by the
    next. The version counts where no source is on disk to digest (bytecode only, a zip)."""
    import logging
    import uuid

    from asset_pipeline import __version__
    from asset_pipeline.loaded_code import PACKAGE, source_digest

    digest = source_digest()
    if digest is None:
        logging.getLogger(__name__).warning(
            "%s changed after this process imported it: the rejects it refuses are examined again by the "
            "next process (restart this one to run the new code)", PACKAGE)
        digest = f"changed since import, process {uuid.uuid4().hex}"
    return (f"asset-pipeline {__version__} {digest}, "
            + ", ".join(f"{d} {_decoder_version(d)}" for d in DECODERS))


def open_source(src: Source) -> BinaryIO:
    return io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")


def _size(src: Source) -> int:
    return len(src) if isinstance(src, bytes) else src.stat().st_size


@dataclass
class FormatInfo:
    type: str
    format: str
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # An image's 64-bit perceptual hash, from the decode that validation made (decoded once).
    phash: int | None = None


def _sniff(head: bytes) -> tuple[str, str] | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio", "wav"
    if head.startswith(b"fLaC"):
        return "audio", "flac"
    if head.startswith(b"OggS"):
        return "audio", "ogg"
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio", "mp3"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return ("audio", "m4a") if brand in (b"M4A ", b"M4B ") else ("video", "mp4")
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "webm"
    if head.startswith(b"\x93NUMPY"):
        return "embedding", "npy"
    if head.startswith(b"GGUF"):
        return "model", "gguf"
    if head.startswith(b"PK\x03\x04"):
        return "model", "pytorch-zip"
    if len(head) >= 10:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len < 100_000_000 and head[8:9] == b"{":
            return "model", "safetensors"
    if head.lstrip()[:1] in (b"{", b"["):
        return "prompt", "json"
    return None


def _wav(src: Source) -> FormatInfo:
    """The frames the header declares must all be there (read in blocks, memory stays flat)."""
    try:
        with open_source(src) as f, wave.open(f, "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
            channels, frame_bytes = w.getnchannels(), w.getnchannels() * w.getsampwidth()
            held = 0
            while block := w.readframes(256 * 1024):
                held += len(block)
    except (wave.Error, EOFError) as exc:
        raise InputRejected(f"wav audio is corrupt: {exc}", "content") from exc
    if frame_bytes and held // frame_bytes != frames:
        raise InputRejected(f"wav header declares {frames} frames; the data holds {held // frame_bytes} "
                            "(truncated)", "content")
    return FormatInfo("audio", "wav", duration_s=frames / rate if rate else None,
                      details={"sample_rate": rate, "channels": channels})


def _av(src: Source, type_: str, fmt: str, limits: ValidationLimits) -> FormatInfo:
    """Container formats through PyAV (it ships its own FFmpeg). Every packet is demuxed, so a
    header cannot declare streams, frames or seconds the data does not hold; the first video
    frame is decoded (its size checked against the pixel limit first) and must match the header.
    Decoding every frame of a long video would cost minutes, so the rest is not decoded."""
    import av

    from asset_pipeline.media_streams import check_streams

    try:
        with open_source(src) as f, av.open(f) as container:
            return check_streams(container, type_, fmt, limits)
    except InputRejected:
        raise
    except Exception as exc:  # av raises many FFmpeg error classes
        raise InputRejected(f"{fmt} media is unreadable: {exc}", "content") from exc


def _npy(src: Source) -> FormatInfo:
    import numpy as np

    try:
        with open_source(src) as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read_header(f)
            data_start = f.tell()
    except (ValueError, OSError) as exc:
        raise InputRejected(f"npy array header is invalid: {exc}", "content") from exc
    if dtype.hasobject:
        raise InputRejected("npy array holds Python objects (only plain numeric data is accepted)", "content")
    expected = data_start + math.prod(shape) * dtype.itemsize  # Python ints: a huge shape cannot wrap around
    actual = _size(src)
    if actual != expected:
        raise InputRejected(f"npy array's shape {tuple(shape)} of {dtype} needs {expected} bytes; the file has "
                            f"{actual} (truncated or padded)", "content")
    return FormatInfo("embedding", "npy", details={"shape": list(shape), "dtype": str(dtype)})


def _safetensors(src: Source) -> FormatInfo:
    """The safetensors library checks the header against the file: offsets contiguous from 0,
    each tensor's bytes equal to its shape times its dtype, the last one ending exactly at the end
    of the file. A file is memory-mapped for that (tensors are not read); bytes in memory are
    parsed as they are. A header without tensors is no model."""
    from safetensors import SafetensorError, deserialize, safe_open

    try:
        if isinstance(src, bytes):
            names = [name for name, _ in deserialize(src)]
        else:
            with safe_open(str(src), framework="numpy") as f:
                names = list(f.keys())
    except SafetensorError as exc:
        raise InputRejected(f"safetensors file is invalid: {exc}", "content") from exc
    if not names:
        raise InputRejected("safetensors file holds no tensors (its header is empty)", "content")
    return FormatInfo("model", "safetensors", details={"tensors": len(names)})


def _json_prompt(src: Source) -> FormatInfo:
    if _size(src) > _JSON_PROMPT_MAX:
        raise InputRejected("JSON prompt is larger than 16 MiB", "content")
    try:
        doc = json.loads(src if isinstance(src, bytes) else src.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputRejected(f"JSON prompt does not parse: {exc}", "content") from exc
    except RecursionError as exc:
        raise InputRejected("JSON prompt is nested too deeply to parse", "content") from exc
    if not isinstance(doc, dict):
        raise InputRejected("JSON prompt must be an object", "content")
    return FormatInfo("prompt", "json")


def inspect_file(src: Source, limits: ValidationLimits = ValidationLimits()) -> FormatInfo:
    """Detect the format of `src` (a path, or a whole file's bytes) from its content and check it
    is complete, within `limits`.

    Raises InputRejected (field ``content``) for empty, unknown, corrupt or truncated files —
    including any error a decoder raises, so one odd file can never crash a run.
    """
    try:
        return _inspect(src, limits)
    except InputRejected:
        raise
    except (OSError, FileNotFoundError):
        raise
    except Exception as exc:  # a decoder's own error on hostile bytes
        raise InputRejected(f"content could not be decoded: {type(exc).__name__}: {exc}", "content") from exc


def _inspect(src: Source, limits: ValidationLimits) -> FormatInfo:
    if isinstance(src, bytes):
        head = src[:64]
    else:
        with open(src, "rb") as f:
            head = f.read(64)
    if not head:
        raise InputRejected("file is empty (0 bytes)", "content")
    sniffed = _sniff(head)
    if sniffed is None:
        raise InputRejected(f"unknown format (first bytes {head[:8].hex()})", "content")
    type_, fmt = sniffed
    if type_ == "image":
        from asset_pipeline.images import check_image

        return check_image(src, fmt, limits)
    if fmt == "wav":
        return _wav(src)
    if fmt in ("mp4", "m4a", "webm", "flac", "ogg", "mp3"):
        return _av(src, type_, fmt, limits)
    if fmt == "npy":
        return _npy(src)
    if fmt == "safetensors":
        return _safetensors(src)
    if fmt == "json":
        return _json_prompt(src)
    return FormatInfo(type_, fmt)
