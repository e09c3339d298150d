"""Preview tables with thumbnails (dagster_defs/metadata.py), on real ingested homes: the pictures
are the stored blobs', small, and bounded in number and bytes (metadata lives in the event log)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from asset_pipeline import Catalog
from asset_pipeline.dagster_defs.metadata import MAX_THUMBNAIL_BYTES, markdown_table, thumbnail_table
from asset_pipeline.sidecar import SIDECAR_SUFFIX

PICTURE = re.compile(r"!\[image\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")
COLUMNS = ["asset_id", "version", "type", "format", "size_bytes", "source_path"]


def _versions(catalog: Catalog) -> list[dict]:
    return catalog.home.tables.read("asset_versions", columns=COLUMNS).to_pylist()


def test_image_rows_carry_a_thumbnail_and_other_rows_their_type(ingested: Catalog) -> None:
    rows = _versions(ingested)
    md = thumbnail_table(rows, ingested.home.tables, ingested.home.store, {"thumbnail": ("asset_id", "version")}).value
    lines = md.splitlines()
    assert lines[0] == "| thumbnail | " + " | ".join(COLUMNS) + " |"  # the rows' own columns stay, after it
    pictures = PICTURE.findall(md)
    assert len(pictures) == sum(r["type"] == "image" for r in rows) > 0
    for encoded in pictures:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
            assert image.format == "PNG" and max(image.size) <= 64
    for row in rows:
        line = next(li for li in lines[2:] if f"| {row['asset_id']} | {row['version']} |" in li)
        assert line.startswith("| ![image](data:image/png;base64,") == (row["type"] == "image")
        if row["type"] != "image":  # audio, video, prompt...: the type instead of a picture
            assert line.startswith(f"| _{row['type']}_ |")


def test_markdown_table_with_pictures_is_the_thumbnail_table(ingested: Catalog) -> None:
    rows = _versions(ingested)
    pictures = {"thumbnail": ("asset_id", "version")}
    assert markdown_table(rows, pictures=pictures, home=ingested.home).value == thumbnail_table(
        rows, ingested.home.tables, ingested.home.store, pictures).value
    plain = markdown_table(rows, ["asset_id", "type"]).value  # without pictures: as before
    assert "data:" not in plain and plain.splitlines()[0] == "| asset_id | type |"


def test_a_pair_shows_both_pictures_side_by_side(ingested: Catalog) -> None:
    images = [r for r in _versions(ingested) if r["type"] == "image"][:2]
    pair = {"asset_a": images[0]["asset_id"], "version_a": images[0]["version"],
            "asset_b": images[1]["asset_id"], "version_b": images[1]["version"], "similarity": 0.97}
    md = thumbnail_table([pair], ingested.home.tables, ingested.home.store,
                         {"a": ("asset_a", "version_a"), "b": ("asset_b", "version_b")},
                         ["asset_a", "asset_b", "similarity"]).value
    header, _, row = md.splitlines()
    assert header == "| a | b | asset_a | asset_b | similarity |"
    assert re.fullmatch(r"\| !\[image\]\(data:[^)]+\) \| !\[image\]\(data:[^)]+\) \| a_\w+ \| a_\w+ \| 0\.97 \|", row)


def test_pictures_stop_at_the_count_and_byte_limits(catalog: Catalog, settings) -> None:
    """Worst-case content for PNG (noise: incompressible) in 30 images: at most 20 pictures, and
    their data URIs within the byte budget, so the whole value stays far below 200 KB."""
    inbox = Path(settings.inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(11)
    for i in range(30):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(out, format="PNG")
        (inbox / f"noise-{i:02d}.png").write_bytes(out.getvalue())
        (inbox / f"noise-{i:02d}.png{SIDECAR_SUFFIX}").write_text(json.dumps(
            {"model": "m", "prompt": "noise", "seed": i, "created_by": "u", "project": "p"}))
    catalog.ingest()
    rows = _versions(catalog)
    spec = {"thumbnail": ("asset_id", "version")}
    md = thumbnail_table(rows, catalog.home.tables, catalog.home.store, spec).value
    pictures = PICTURE.findall(md)
    assert 0 < len(pictures) <= 20
    assert sum(len("data:image/png;base64,") + len(p) for p in pictures) <= MAX_THUMBNAIL_BYTES
    assert len(md.encode()) < 150_000
    assert md.count("| _image_ |") == len(rows) - len(pictures)  # the rest say what they are
    few = thumbnail_table(rows, catalog.home.tables, catalog.home.store, spec, max_thumbnails=3).value
    assert len(PICTURE.findall(few)) == 3
