"""Images are decoded in full before they are accepted, within a pixel limit.

`img.verify()` only walks chunks and CRCs: a PNG whose data holds 10 of the 100 rows its header
declares passes it, and so does a 74-byte file declaring 13000x13000. Here the declared size is
checked first (Pillow has read only the header: nothing is allocated), then the structure is
walked to its end (`image_layout`: truncation, missing rows, bytes appended after the image),
then every frame is decoded. A JPEG is decoded a second time by FFmpeg with error detection
on: libjpeg (Pillow's decoder) fills a scan that ends early at an end-of-image marker with grey
and only warns, so half a JPEG with an EOI appended would pass Pillow alone.
"""

from __future__ import annotations

from asset_pipeline.errors import InputRejected
from asset_pipeline.formats import FormatInfo, Source, ValidationLimits, open_source
from asset_pipeline.image_layout import ENDS

_LIMIT_SETTING = "ASSET_PIPELINE_MAX_IMAGE_PIXELS"


def check_pixels(fmt: str, width: int, height: int, limits: ValidationLimits, what: str = "image") -> None:
    """Refuse a declared size above the limit, before anything is decoded."""
    if width * height > limits.max_image_pixels:
        raise InputRejected(f"{fmt} {what} declares {width}x{height} pixels ({width * height}), above the limit "
                            f"of {limits.max_image_pixels} ({_LIMIT_SETTING})", "content")


def _check_end(src: Source, fmt: str, limits: ValidationLimits) -> None:
    with open_source(src) as f:
        end = ENDS[fmt](f)
        f.seek(0, 2)
        size = f.tell()
    if size > end and not limits.allow_trailing_bytes:
        raise InputRejected(f"{size - end} bytes after the end of the {fmt} image (at offset {end}): refused, "
                            "as anything appended to an image would be stored unseen (set "
                            "ASSET_PIPELINE_ALLOW_TRAILING_BYTES=1 to accept them)", "content")


def _jpeg_decodes_strictly(src: Source) -> None:
    import av

    try:
        with open_source(src) as f, av.open(f, format="jpeg_pipe") as container:
            container.streams.video[0].codec_context.options = {"err_detect": "explode"}
            if not any(True for _ in container.decode(video=0)):
                raise InputRejected("jpeg image decodes to no picture", "content")
    except InputRejected:
        raise
    except Exception as exc:  # FFmpeg's error classes
        raise InputRejected(f"jpeg image data is corrupt or ends early: {exc}", "content") from exc


def check_image(src: Source, fmt: str, limits: ValidationLimits) -> FormatInfo:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with open_source(src) as f, Image.open(f, formats=[fmt.upper()]) as img:
            width, height = img.size
            check_pixels(fmt, width, height, limits)
            mode = img.mode
            _check_end(src, fmt, limits)
            decoded = 0
            perceptual: int | None = None
            for index, frame in enumerate(ImageSequence.Iterator(img)):
                decoded += width * height
                if decoded > limits.max_image_pixels:
                    raise InputRejected(f"{fmt} animation decodes to more than {limits.max_image_pixels} pixels "
                                        f"over its frames ({width}x{height} each; {_LIMIT_SETTING})", "content")
                frame.load()
                if index == 0:  # the first frame's pHash from this decode, not from a decode of its own
                    perceptual = _phash_or_none(frame)
        if fmt == "jpeg":
            _jpeg_decodes_strictly(src)
    except Image.DecompressionBombError as exc:
        raise InputRejected(f"{fmt} image is above Pillow's decompression-bomb limit: {exc}", "content") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputRejected(f"{fmt} image is corrupt or truncated: {exc}", "content") from exc
    return FormatInfo("image", fmt, width, height, details={"mode": mode}, phash=perceptual)


def _phash_or_none(frame) -> int | None:
    from asset_pipeline.provenance.phash import image_phash

    try:
        return image_phash(frame)
    except Exception:  # noqa: BLE001 - a frame Pillow decoded but cannot resample: no hash
        return None
