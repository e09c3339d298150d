"""The ingest's format validation as it was before issue 10 (header-only: `img.verify()`, container
headers, safetensors header JSON), kept verbatim as the baseline that bench/ingest.py measures full
decoding against. Not part of the package; nothing else imports it.

Content-based format detection and validation.

The format comes from the bytes, never from the file name: a `.png` that holds a JPEG is a JPEG,
and a file nobody recognises is rejected instead of being stored as an opaque blob. Only headers
(and, for images, the chunk structure) are read, so a 100 GB model costs a few kilobytes here.
A small file the ingest already holds in memory is inspected from those bytes (`Source`), so it
is read from disk once for hashing, checking and storing together.
"""

from __future__ import annotations

import io
import json
import struct
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from asset_pipeline.errors import InputRejected

ASSET_TYPES = ("image", "video", "audio", "embedding", "model", "prompt")
_JSON_PROMPT_MAX = 16 * 1024 * 1024

Source = Path | bytes  # a file, or the whole content of one already read


def _open(src: Source) -> BinaryIO:
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
    phash: int | None = None  # an image's pHash, from a decode of its own (this check decodes no pixels)


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


def _image(src: Source, fmt: str) -> FormatInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        with _open(src) as f, Image.open(f, formats=[fmt.upper()]) as img:
            width, height = img.size
            mode = img.mode
            # verify() walks the whole chunk structure (CRCs for PNG) without decoding pixels;
            # a truncated PNG fails here. JPEG/WebP need a decode to prove they are complete.
            img.verify()
        if fmt in ("jpeg", "webp", "gif"):
            with _open(src) as f, Image.open(f, formats=[fmt.upper()]) as img:
                img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputRejected(f"{fmt} image is corrupt or truncated: {exc}", "content") from exc
    return FormatInfo("image", fmt, width, height, details={"mode": mode}, phash=_phash(src))


def _phash(src: Source) -> int | None:
    from asset_pipeline.provenance.phash import phash

    try:
        return phash(src)
    except Exception:  # noqa: BLE001 - an image Pillow verified but cannot resample: no hash
        return None


def _wav(src: Source) -> FormatInfo:
    try:
        with _open(src) as f, wave.open(f, "rb") as w:
            frames, rate = w.getnframes(), w.getframerate()
            channels = w.getnchannels()
    except (wave.Error, EOFError) as exc:
        raise InputRejected(f"wav audio is corrupt: {exc}", "content") from exc
    return FormatInfo("audio", "wav", duration_s=frames / rate if rate else None,
                      details={"sample_rate": rate, "channels": channels})


def _av(src: Source, type_: str, fmt: str) -> FormatInfo:
    """Container formats through PyAV (ships its own FFmpeg); header only."""
    try:
        import av
    except ImportError:  # pragma: no cover - av is a declared dependency
        return FormatInfo(type_, fmt)
    try:
        with _open(src) as f, av.open(f) as container:
            duration = container.duration / 1_000_000 if container.duration else None
            width = height = None
            if container.streams.video:
                stream = container.streams.video[0]
                width, height = stream.width or None, stream.height or None
            elif type_ == "video":
                type_ = "audio"
    except Exception as exc:  # av raises many FFmpeg error classes
        raise InputRejected(f"{fmt} media is unreadable: {exc}", "content") from exc
    return FormatInfo(type_, fmt, width, height, duration)


def _npy(src: Source) -> FormatInfo:
    import numpy as np

    try:
        with _open(src) as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read_header(f)
            data_start = f.tell()
    except (ValueError, OSError) as exc:
        raise InputRejected(f"npy array header is invalid: {exc}", "content") from exc
    expected = data_start + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = _size(src)
    if dtype.hasobject or actual != expected:
        raise InputRejected(f"npy array is truncated or holds objects ({actual} bytes, expected {expected})",
                            "content")
    return FormatInfo("embedding", "npy", details={"shape": list(shape), "dtype": str(dtype)})


def _safetensors(src: Source) -> FormatInfo:
    size = _size(src)
    with _open(src) as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            raise InputRejected("safetensors header is longer than the file", "content")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputRejected(f"safetensors header is not JSON: {exc}", "content") from exc
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if 8 + header_len + max(ends, default=0) > size:
        raise InputRejected("safetensors file is truncated (tensors extend past its end)", "content")
    return FormatInfo("model", "safetensors", details={"tensors": len(ends)})


def _json_prompt(src: Source) -> FormatInfo:
    if _size(src) > _JSON_PROMPT_MAX:
        raise InputRejected("JSON prompt is larger than 16 MiB", "content")
    try:
        doc = json.loads(src if isinstance(src, bytes) else src.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputRejected(f"JSON prompt does not parse: {exc}", "content") from exc
    if not isinstance(doc, dict):
        raise InputRejected("JSON prompt must be an object", "content")
    return FormatInfo("prompt", "json")


def inspect_file(src: Source) -> FormatInfo:
    """Detect the format of `src` (a path, or a whole file's bytes) from its content and check it
    is complete.

    Raises InputRejected (field ``content``) for empty, unknown, corrupt or truncated files —
    including any error a decoder raises, so one odd file can never crash a run.
    """
    try:
        return _inspect(src)
    except InputRejected:
        raise
    except (OSError, FileNotFoundError):
        raise
    except Exception as exc:  # a decoder's own error on hostile bytes
        raise InputRejected(f"content could not be decoded: {type(exc).__name__}: {exc}", "content") from exc


def _inspect(src: Source) -> FormatInfo:
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
        return _image(src, fmt)
    if fmt == "wav":
        return _wav(src)
    if fmt in ("mp4", "m4a", "webm", "flac", "ogg", "mp3"):
        return _av(src, type_, fmt)
    if fmt == "npy":
        return _npy(src)
    if fmt == "safetensors":
        return _safetensors(src)
    if fmt == "json":
        return _json_prompt(src)
    return FormatInfo(type_, fmt)
