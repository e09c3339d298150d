import json
from pathlib import Path

import pytest

from asset_pipeline.errors import InputRejected
from asset_pipeline.formats import inspect_file
from asset_pipeline.samples import render_image
from asset_pipeline.sidecar import parse_sidecar


@pytest.mark.parametrize("rel, type_, fmt", [
    ("images/sunset.png", "image", "png"), ("images/portrait.jpg", "image", "jpeg"),
    ("images/city.webp", "image", "webp"), ("audio/chime.wav", "audio", "wav"),
    ("video/loading-bar.mp4", "video", "mp4"), ("prompts/rocket.json", "prompt", "json"),
    ("embeddings/sunset-clip.npy", "embedding", "npy"), ("models/rocket-lora.safetensors", "model", "safetensors"),
])
def test_samples_are_detected_from_content(settings, sample_counts, rel, type_, fmt) -> None:
    info = inspect_file(Path(settings.inbox) / rel)
    assert (info.type, info.format) == (type_, fmt)


def test_dimensions_and_durations(settings, sample_counts) -> None:
    inbox = Path(settings.inbox)
    assert (inspect_file(inbox / "images/sunset.png").width, inspect_file(inbox / "images/sunset.png").height) \
        == (512, 384)
    assert inspect_file(inbox / "audio/chime.wav").duration_s == pytest.approx(1.0)
    assert inspect_file(inbox / "video/loading-bar.mp4").duration_s == pytest.approx(2.0, abs=0.2)


def test_the_extension_does_not_decide_the_format(tmp_path: Path) -> None:
    liar = tmp_path / "photo.png"
    liar.write_bytes(render_image(1, (32, 32), "JPEG"))
    assert inspect_file(liar).format == "jpeg"


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x00\x01\x02 definitely not media" * 4, "unknown format"),
    (render_image(2, (128, 128))[:500], "truncated"),
    (render_image(3, (128, 128), "JPEG")[:700], "truncated"),
    (b"{ not json", "does not parse"),
])
def test_bad_content_is_rejected_with_a_reason(tmp_path: Path, data: bytes, message: str) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(data)
    with pytest.raises(InputRejected, match=message) as info:
        inspect_file(bad)
    assert info.value.field == "content"


def _sidecar(**changes) -> bytes:
    doc = {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "proj"}
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


@pytest.mark.parametrize("changes, field", [
    ({"model": ...}, "model"), ({"seed": "42"}, "seed"), ({"seed": True}, "seed"), ({"project": ""}, "project"),
    ({"tags": "a,b"}, "tags"), ({"parameters": [1]}, "parameters"), ({"created_at": "yesterday"}, "created_at"),
    ({"created_by": "eve\x07"}, "created_by"),
])
def test_sidecar_errors_name_the_field(changes, field) -> None:
    with pytest.raises(InputRejected) as info:
        parse_sidecar(_sidecar(**changes))
    assert info.value.field == field and field in str(info.value)


def test_sidecar_keeps_unknown_fields_and_normalises_tags() -> None:
    s = parse_sidecar(_sidecar(tags=["b", "a", "a"], sampler_version="2.1", created_at="2026-01-02T03:04:05Z"))
    assert s.tags == ["a", "b"] and s.extra == {"sampler_version": "2.1"}
    assert s.created_at.isoformat() == "2026-01-02T03:04:05+00:00"


def test_malformed_sidecar_is_rejected() -> None:
    with pytest.raises(InputRejected, match="not valid JSON") as info:
        parse_sidecar(b'{"model": ')
    assert info.value.field == "sidecar"
