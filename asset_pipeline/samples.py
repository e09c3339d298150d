"""A realistic sample inbox that the project writes itself (no downloads): the embedded default's
input, and the fixture most tests start from."""

from __future__ import annotations

import io
import json
import math
import struct
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from asset_pipeline.sidecar import SIDECAR_SUFFIX

_T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _meta(project: str, prompt: str, seed: int, minutes: int, **more) -> dict:
    doc = {
        "model": more.pop("model", "sdxl-turbo-1.0"), "prompt": prompt, "seed": seed,
        "parameters": more.pop("parameters", {"steps": 4, "guidance": 0.0, "sampler": "euler_a"}),
        "created_by": more.pop("created_by", "alice"), "project": project,
        "tags": more.pop("tags", []), "created_at": (_T0 + timedelta(minutes=minutes)).isoformat(),
    }
    doc.update(more)
    return doc


def _write(root: Path, rel: str, data: bytes, meta: dict | None, raw_meta: bytes | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if meta is not None or raw_meta is not None:
        side = path.with_name(path.name + SIDECAR_SUFFIX)
        side.write_bytes(raw_meta if raw_meta is not None else json.dumps(meta, indent=2).encode())


def render_image(seed: int, size: tuple[int, int], fmt: str = "PNG") -> bytes:
    """A distinct picture per seed: a colour gradient with a few shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0.0, 1.0, w)[None, :, None]
    grad = (c0 * (1 - t) + c1 * t).astype(np.uint8).repeat(h, axis=0)
    img = Image.fromarray(grad, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x1, y1 = x0 + int(rng.integers(w // 8, w // 2)), y0 + int(rng.integers(h // 8, h // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return buf.getvalue()


def _wav(seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        n = int(seconds * rate)
        w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
                               for i in range(n)))
    return buf.getvalue()


def _mp4(frames: int = 16, size: tuple[int, int] = (64, 48), fps: int = 8) -> bytes | None:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a declared dependency
        return None
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = np.zeros((size[1], size[0], 3), np.uint8)
            frame[:, : (i + 1) * size[0] // frames] = (255, 120, 20)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _npy(dim: int = 512, seed: int = 7) -> bytes:
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, vec / np.linalg.norm(vec))
    return buf.getvalue()


def _safetensors(seed: int = 3) -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    # One metadata entry: safetensors writes several in a hash map's order, which changes from one
    # process to the next, and the samples must be the same bytes every time they are made.
    return save({"lora_down.weight": rng.standard_normal((8, 64)).astype(np.float32),
                 "lora_up.weight": rng.standard_normal((64, 8)).astype(np.float32)},
                metadata={"format": "pt"})


# --- outputs that carry their own generation metadata (issue 14) -------------------------------
# Each kind a generator writes: A1111 `parameters` text, ComfyUI `prompt`/`workflow` JSON, EXIF
# and XMP (with the IPTC digital source type). forest, icon and portrait have no sidecar; hero
# has both (its sidecar wins field by field); city's sidecar adds to its XMP.


def _xmp(project: str, creator: str, tags: list[str], created_at: str) -> dict[str, object]:
    from asset_pipeline.provenance import xmp as X

    return {"Xmp.assetpipeline.project": project, "Xmp.dc.creator": [creator], "Xmp.dc.subject": tags,
            "Xmp.xmp.CreateDate": created_at, "Xmp.iptcExt.DigitalSourceType": X.TRAINED_ALGORITHMIC_MEDIA}


def _png_with_text(seed: int, size: tuple[int, int], chunks: dict[str, str]) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buf = io.BytesIO()
    Image.open(io.BytesIO(render_image(seed, size))).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def a1111_parameters(prompt: str, seed: int, model: str, size: tuple[int, int], negative: str = "blurry") -> str:
    return (f"{prompt}\nNegative prompt: {negative}\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, "
            f"Seed: {seed}, Size: {size[0]}x{size[1]}, Model hash: 31e35c80fc, Model: {model}, Version: v1.6.0")


def comfyui_prompt(prompt: str, seed: int, checkpoint: str, lora: str | None = None,
                   init_image: str | None = None) -> dict:
    """A ComfyUI API graph: checkpoint → (LoRA) → sampler with text encoders (img2img with an init image)."""
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark, text", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 8, "cfg": 4.5, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 0.6, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["12", 0]}},
    }
    if lora:
        graph["10"] = {"class_type": "LoraLoader", "inputs": {"lora_name": lora, "strength_model": 0.7,
                                                             "strength_clip": 0.7, "model": ["4", 0],
                                                             "clip": ["4", 1]}}
        graph["3"]["inputs"]["model"] = ["10", 0]
    if init_image:
        graph["11"] = {"class_type": "LoadImage", "inputs": {"image": init_image}}
        graph["12"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["11", 0], "vae": ["4", 2]}}
    return graph


def _a1111_png(seed, size, prompt, tags, meta):
    """Automatic1111: the `parameters` text chunk, plus XMP naming the project; no sidecar."""
    from asset_pipeline.provenance.xmp import write_xmp

    data = _png_with_text(seed, size, {"parameters": a1111_parameters(prompt, seed, "sd_xl_base_1.0", size)})
    return write_xmp(data, _xmp(meta["project"], meta["created_by"], tags, meta["created_at"])), None


def _comfyui_png(seed, size, prompt, tags, meta):
    """ComfyUI: `prompt` (API graph) and `workflow` chunks, img2img from sunset.png; no sidecar."""
    from asset_pipeline.provenance.xmp import write_xmp

    graph = comfyui_prompt(prompt, seed, "flux1-schnell.safetensors", "flat-icons.safetensors",
                           init_image="images/sunset.png")
    workflow = {"last_node_id": 12, "nodes": [{"id": int(k), "type": v["class_type"]} for k, v in graph.items()]}
    data = _png_with_text(seed, size, {"prompt": json.dumps(graph), "workflow": json.dumps(workflow)})
    return write_xmp(data, _xmp(meta["project"], meta["created_by"], tags, meta["created_at"])), None


def _exif_jpeg(seed, size, prompt, tags, meta):
    """EXIF Artist/ImageDescription and A1111 parameters in UserComment (as A1111 saves JPEGs),
    XMP for project and tags; no sidecar."""
    from asset_pipeline.provenance.xmp import write_xmp

    img = Image.open(io.BytesIO(render_image(seed, size)))
    exif = Image.Exif()
    exif[0x013B] = meta["created_by"]
    exif[0x010E] = prompt
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + a1111_parameters(prompt, seed, "sd_xl_base_1.0", size).encode(
        "utf-16-be")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif)
    xmp = _xmp(meta["project"], meta["created_by"], tags, meta["created_at"])
    return write_xmp(buf.getvalue(), {k: v for k, v in xmp.items() if k != "Xmp.dc.creator"}), None


def _hero_png(seed, size, prompt, tags, meta):
    """A1111 parameters naming a LoRA, with a sidecar: the sidecar's prompt and seed win."""
    text = a1111_parameters(prompt + " <lora:rocket-style:0.8>", 99, "sdxl-turbo-1.0", size)
    return _png_with_text(seed, size, {"parameters": text}), meta


def _city_webp(seed, size, prompt, tags, meta):
    """WebP with XMP (digital source type, creator) and a sidecar that adds the rest."""
    from asset_pipeline.provenance import xmp as X

    data = X.write_xmp(render_image(seed, size, "WEBP"), {"Xmp.iptcExt.DigitalSourceType": X.TRAINED_ALGORITHMIC_MEDIA,
                                                          "Xmp.dc.creator": ["carol"]})
    return data, meta


EMBEDDED_SAMPLES = {"images/forest.png": _a1111_png, "images/icon.png": _comfyui_png,
                    "images/portrait.jpg": _exif_jpeg, "images/hero.png": _hero_png, "images/city.webp": _city_webp}


def make_samples(root: str | Path) -> dict[str, int]:
    """Write the sample inbox under `root`; returns counts of what a clean ingest should see."""
    root = Path(root)
    images = [
        ("images/sunset.png", 11, (512, 384), "PNG", "a sunset over a calm sea, golden hour", ["landscape", "sunset"]),
        ("images/forest.png", 12, (256, 256), "PNG", "a misty pine forest at dawn", ["landscape"]),
        ("images/icon.png", 13, (64, 64), "PNG", "a flat app icon of a paper plane", ["icon"]),
        ("images/portrait.jpg", 14, (384, 512), "JPEG", "portrait of an astronaut, studio light", ["portrait"]),
        ("images/city.webp", 15, (320, 240), "WEBP", "a neon city street in the rain at night", ["city", "night"]),
        ("images/hero.png", 16, (400, 300), "PNG", "hero banner with a red rocket", ["banner"]),
    ]
    for i, (rel, seed, size, fmt, prompt, tags) in enumerate(images):
        if rel in EMBEDDED_SAMPLES:  # generation metadata inside the file (and maybe a sidecar)
            data, meta = EMBEDDED_SAMPLES[rel](seed, size, prompt, tags, _meta("research", prompt, seed, i, tags=tags))
            _write(root, rel, data, meta)
        else:
            _write(root, rel, render_image(seed, size, fmt), _meta("research", prompt, seed, i, tags=tags))

    sunset = (root / "images/sunset.png").read_bytes()
    # Exact duplicates: the same bytes under another name, and filed by another project.
    _write(root, "images/sunset-copy.png", sunset,
           _meta("research", "a sunset over a calm sea, golden hour", 11, 10, tags=["duplicate"]))
    _write(root, "marketing/sunset.png", sunset,
           _meta("marketing", "a sunset over a calm sea, golden hour", 11, 11, created_by="bob", tags=["campaign"]))
    # A second version of images/hero: names the asset it belongs to.
    _write(root, "images/hero-v2.png", render_image(17, (400, 300)),
           _meta("research", "hero banner with a red rocket, brighter", 17, 20, tags=["banner"],
                 name="images/hero", change_description="brighter colours"))

    _write(root, "audio/chime.wav", _wav(), _meta("research", "a soft bell chime", 21, 30,
                                                    model="audiogen-small", tags=["sfx"]))
    video = _mp4()
    if video is not None:
        _write(root, "video/loading-bar.mp4", video, _meta("research", "a loading bar filling up", 22, 31,
                                                           model="video-diffusion-tiny", tags=["ui"]))
    _write(root, "prompts/rocket.json",
           json.dumps({"prompt": "hero banner with a red rocket", "negative_prompt": "blurry"}).encode(),
           _meta("research", "hero banner with a red rocket", 16, 32, model="prompt-library", tags=["banner"]))
    _write(root, "embeddings/sunset-clip.npy", _npy(),
           _meta("research", "a sunset over a calm sea, golden hour", 11, 33, model="ViT-B-32", tags=["embedding"]))
    _write(root, "models/rocket-lora.safetensors", _safetensors(),
           _meta("research", "LoRA trained on rocket banners", 5, 34, model="sdxl-lora-trainer", tags=["lora"]))

    # Bad inputs: each must be quarantined with a reason, never dropped.
    _write(root, "bad/truncated.png", render_image(31, (256, 256))[:900], _meta("research", "truncated", 31, 40))
    _write(root, "bad/malformed-sidecar.png", render_image(32, (64, 64)), None,
           raw_meta=b'{"model": "sdxl", "prompt": "oops", "seed": ')
    _write(root, "bad/empty.png", b"", _meta("research", "empty output", 33, 41))
    _write(root, "bad/unknown.bin", b"\x00\x01garbage-not-a-known-format" * 10, _meta("research", "unknown", 34, 42))

    media = 6 + 3 + 1 + (1 if video is not None else 0) + 3
    # Every good input is a version; hero-v2 adds no asset; two inputs repeat sunset's bytes.
    return {"inputs": media + 4, "rejected": 4, "versions": media, "assets": media - 1,
            "blobs": media - 2, "deduplicated": 2}
