"""Media that only looks valid: decoded within bounds, refused with the file and the reason, quarantined."""

import hashlib
import io
import json
import struct
import wave
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from asset_pipeline import Catalog, Settings
from asset_pipeline.errors import InputRejected
from asset_pipeline.formats import ValidationLimits, inspect_file
from asset_pipeline.samples import _mp4, _safetensors, _wav, render_image
from asset_pipeline.sidecar import SIDECAR_SUFFIX


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_rows(width: int, height: int, rows: int) -> bytes:
    """A well-formed PNG (valid CRCs, IEND) whose compressed data holds only `rows` of `height` rows."""
    raw = b"".join(b"\0" + bytes(3 * width) for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def grey_png_bomb(side: int) -> bytes:
    """A small file that inflates to side x side grey pixels (a decompression bomb)."""
    z = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.txt", "hidden after the image")
    return buf.getvalue()


def half_a_jpeg() -> bytes:
    """The first two thirds of a JPEG's scan with an end-of-image marker put after it: libjpeg
    only warns and fills the rest with grey."""
    whole = render_image(7, (256, 256), "JPEG")
    return whole[: len(whole) * 2 // 3] + b"\xff\xd9"


def st_file(header: dict | str, data: bytes = b"") -> bytes:
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def truncated_wav() -> bytes:
    return _wav(1.0)[: 44 + 8000]  # header declares 16,000 frames; data holds 4,000


def npy_bytes(header_shape: str, data: bytes, dtype: str = "|u1") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {header_shape}, }}"
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def gif_animation(frames: int, size: tuple[int, int] = (100, 100)) -> bytes:
    from PIL import Image

    images = [Image.new("RGB", size, (i * 10 % 256, 0, 0)) for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=40)
    return buf.getvalue()


def faststart_mp4(tmp_path: Path) -> bytes:
    """An mp4 with its index (moov) before the data, as web encoders write it."""
    import av

    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(16):
            frame = np.zeros((48, 64, 3), np.uint8)
            frame[:, : (i + 1) * 4] = (255, 120, 20)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.read_bytes()


HOSTILE = {
    # name: (bytes, words the reason must contain)
    "rows-missing.png": (png_with_rows(100, 100, 10), "pixel data"),
    "huge-declared.png": (png_with_rows(13000, 13000, 0), "13000x13000"),
    "png-plus-zip.png": (render_image(1, (32, 32)) + zip_bytes(), "after the end of the png image"),
    "jpeg-plus-zip.jpg": (render_image(2, (32, 32), "JPEG") + zip_bytes(), "after the end of the jpeg image"),
    "half-a-jpeg.jpg": (half_a_jpeg(), "ends early"),
    "tiny.safetensors": (st_file("{}   "), "no tensors"),
    "empty-header.safetensors": (st_file({}), "no tensors"),
    "short-data.safetensors": (st_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
                               "safetensors"),
    "offsets-lie.safetensors": (st_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8),
                                "safetensors"),
    "truncated.wav": (truncated_wav(), "16000 frames"),
    "overflowing-shape.npy": (npy_bytes("(2305843009213693952, 8)", b""), "shape"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_broken_media_is_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    data, words = HOSTILE[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputRejected) as info:
        inspect_file(path)
    assert info.value.field == "content"
    assert words in info.value.reason and "\n" not in info.value.reason
    with pytest.raises(InputRejected):  # the same bytes already in memory (how the ingest reads small files)
        inspect_file(data)


def test_the_74_byte_png_is_refused_before_any_pixel_is_allocated() -> None:
    import tracemalloc

    data = png_with_rows(13000, 13000, 0)
    assert len(data) < 100
    tracemalloc.start()
    try:
        with pytest.raises(InputRejected, match="13000x13000 pixels"):
            inspect_file(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # the raster would be 507 MB


def test_a_decompression_bomb_is_refused_by_the_pixel_limit() -> None:
    bomb = grey_png_bomb(10_000)  # 100 MP from about 100 KB
    assert len(bomb) < 1024 * 1024
    with pytest.raises(InputRejected, match="above the limit of 89478485"):
        inspect_file(bomb)


def test_the_pixel_limit_is_a_setting() -> None:
    image = render_image(3, (64, 64))
    assert inspect_file(image).width == 64
    with pytest.raises(InputRejected, match="64x64 pixels .* above the limit of 1000"):
        inspect_file(image, ValidationLimits(max_image_pixels=1000))


def test_animation_frames_count_against_the_pixel_limit() -> None:
    gif = gif_animation(20)  # 20 x 100 x 100 = 200,000 pixels decoded
    assert inspect_file(gif).format == "gif"
    with pytest.raises(InputRejected, match="frames"):
        inspect_file(gif, ValidationLimits(max_image_pixels=150_000))


def test_trailing_bytes_can_be_allowed_by_a_setting() -> None:
    polyglot = render_image(4, (32, 32)) + zip_bytes()
    info = inspect_file(polyglot, ValidationLimits(allow_trailing_bytes=True))
    assert (info.format, info.width) == ("png", 32)
    motion_photo = render_image(5, (32, 32), "JPEG") + _mp4()  # a JPEG with a video appended, as some phones write
    assert inspect_file(motion_photo, ValidationLimits(allow_trailing_bytes=True)).format == "jpeg"
    with pytest.raises(InputRejected, match="after the end of the jpeg image"):
        inspect_file(motion_photo)


def test_truncated_video_is_refused_when_its_header_claims_more_than_its_data(tmp_path: Path) -> None:
    whole = faststart_mp4(tmp_path)
    assert inspect_file(whole).duration_s == pytest.approx(2.0, abs=0.2)
    with pytest.raises(InputRejected, match="header declares") as info:
        inspect_file(whole[: int(len(whole) * 0.9)])
    assert "\n" not in info.value.reason
    plain = _mp4()  # index at the end: cut off, the header survives but no frame does
    with pytest.raises(InputRejected):
        inspect_file(plain[: int(len(plain) * 0.7)])


def test_valid_media_still_passes() -> None:
    assert inspect_file(_safetensors()).details == {"tensors": 2}
    assert inspect_file(_wav(0.5)).duration_s == pytest.approx(0.5)
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert inspect_file(buf.getvalue()).details["shape"] == [3, 4]
    for fmt in ("PNG", "JPEG", "WEBP", "GIF"):
        assert inspect_file(render_image(9, (48, 40), fmt)).height == 40
    good = io.BytesIO()
    with wave.open(good, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0\0\0" * 800)
    assert inspect_file(good.getvalue()).duration_s == pytest.approx(0.1)


def test_broken_media_in_the_inbox_is_quarantined_and_never_stored(catalog: Catalog, settings) -> None:
    inbox = Path(settings.inbox)
    for name, (data, _) in HOSTILE.items():
        (inbox / "hostile").mkdir(parents=True, exist_ok=True)
        (inbox / "hostile" / name).write_bytes(data)
        (inbox / "hostile" / (name + SIDECAR_SUFFIX)).write_text(json.dumps(
            {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1"}))
    summary = catalog.ingest()
    assert (summary.new_versions, summary.rejected) == (0, len(HOSTILE))
    rows = {r["source_path"]: r for r in catalog.sql("select * from ingest_errors").to_pylist()}
    assert set(rows) == {f"hostile/{n}" for n in HOSTILE}
    for name, (data, words) in HOSTILE.items():
        row = rows[f"hostile/{name}"]
        assert words in row["reason"] and row["field"] == "content"
        assert Path(row["quarantine_path"]).read_bytes() == data
        assert not catalog.home.store.exists(hashlib.sha256(data).hexdigest())


def test_settings_reach_the_ingest_workers(tmp_path: Path, monkeypatch) -> None:
    """Both knobs come from the environment, once, and reach the worker processes of a Dagster run."""
    import dagster as dg

    import asset_pipeline.ingest as ingest_module
    from asset_pipeline.definitions import build_definitions

    monkeypatch.setattr(ingest_module, "PROCESS_POOL_MIN_ITEMS", 1)
    monkeypatch.setenv("ASSET_PIPELINE_MAX_IMAGE_PIXELS", "2000")
    monkeypatch.setenv("ASSET_PIPELINE_ALLOW_TRAILING_BYTES", "1")
    settings = Settings.from_env(home=tmp_path / "home", durable=False, workers=2)
    assert (settings.max_image_pixels, settings.allow_trailing_bytes) == (2000, True)
    inbox = Path(settings.inbox)
    inbox.mkdir(parents=True)
    meta = json.dumps({"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1"})
    for name, data in (("small.png", render_image(5, (40, 40)) + b"trailer"), ("big.png", render_image(6, (64, 64)))):
        (inbox / name).write_bytes(data)
        (inbox / (name + SIDECAR_SUFFIX)).write_text(meta)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
    assert result.success
    cat = Catalog(settings=settings)
    assert [r["name"] for r in cat.sql("select name from assets").to_pylist()] == ["small"]
    reason = cat.sql("select reason from ingest_errors").column(0)[0].as_py()
    assert "64x64 pixels" in reason and "above the limit of 2000" in reason


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_pixel_limit_setting_says_which_variable(monkeypatch, tmp_path: Path, value: str) -> None:
    from asset_pipeline.errors import AssetPipelineError

    monkeypatch.setenv("ASSET_PIPELINE_MAX_IMAGE_PIXELS", value)
    with pytest.raises(AssetPipelineError, match="ASSET_PIPELINE_MAX_IMAGE_PIXELS"):
        Settings.from_env(home=tmp_path)
