"""Small previews of stored images and videos as ``data:`` URIs, for notebooks and HTML reports.

A preview is a few kilobytes of PNG embedded in the page itself, so a notebook shows it without a
file server and a saved notebook keeps it."""

from __future__ import annotations

import base64
import io

from asset_pipeline.store import ObjectStore

THUMBNAIL_PX = 160
VISUAL_TYPES = ("image", "video")


def thumbnail_png(store: ObjectStore, sha256: str, kind: str, size: int = THUMBNAIL_PX) -> bytes | None:
    """PNG bytes of a preview at most `size` pixels on a side; None for content with no picture
    (audio, prompts, models) or a blob that cannot be decoded."""
    from PIL import Image

    if kind not in VISUAL_TYPES:
        return None
    try:
        with store.open(sha256) as f:
            data = io.BytesIO(f.read())
        if kind == "video":
            from asset_pipeline.embeddings.job import video_frames

            image = video_frames(data, count=1)[0]
        else:
            image = Image.open(data)
            image.load()
        image = image.convert("RGB")
        image.thumbnail((size, size))
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        return out.getvalue()
    except Exception:  # a preview is decoration: a blob that cannot be decoded just has none
        return None


def thumbnail_data_uri(store: ObjectStore, sha256: str, kind: str, size: int = THUMBNAIL_PX) -> str | None:
    png = thumbnail_png(store, sha256, kind, size)
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else None
