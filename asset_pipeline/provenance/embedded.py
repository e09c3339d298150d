"""Generation metadata that image generators embed in their outputs, read at ingest so that a
file without a sidecar is not a reject when it carries its own.

Read, in order of precedence (the first source that gives a field wins; a sidecar beats them all,
see `metadata.py`):
- ``xmp``     the project's own XMP properties (written on export) and XMP/IPTC: dc:creator →
              created_by, dc:description → prompt, dc:subject → tags, xmp:CreateDate → created_at,
              Iptc4xmpExt:DigitalSourceType;
- ``a1111``   the Automatic1111-style ``parameters`` text (PNG text chunk, or EXIF UserComment in
              JPEG/WebP): prompt, negative prompt, Seed, Model, sampler settings, ``<lora:…>`` tags;
- ``comfyui`` ComfyUI's ``prompt`` graph (sampler seed, text encoders, checkpoint, LoRA loaders,
              LoadImage inputs) and ``workflow`` (kept in `extra`);
- ``exif``    Artist → created_by, ImageDescription → prompt, DateTimeOriginal → created_at.
PNG text chunks are those before the image data (where generators and Pillow write them): the
pixels are never decoded here. Unreadable metadata is skipped, never a crash: the ingest then
decides with what is left.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asset_pipeline.provenance import xmp as X

SOURCES = ("xmp", "a1111", "comfyui", "exif")  # precedence among embedded sources
_MAX_TEXT = 1024 * 1024
_WEIGHT_EXT = re.compile(r"\.(safetensors|ckpt|pt|pth|bin|gguf)$", re.IGNORECASE)
_LORA_TAG = re.compile(r"<(?:lora|lyco):([^:>]+)(?::([-0-9.]+))?[^>]*>", re.IGNORECASE)
# The parameter-line grammar A1111 itself parses with: `Key: value` or `Key: "quoted, value"`.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


@dataclass
class Embedded:
    """Sidecar-shaped fields found in a file, with the source each came from."""

    fields: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)    # large raw documents (ComfyUI graphs)
    inputs: list[str] = field(default_factory=list)        # files or assets the generation used
    digital_source_type: str | None = None

    def __bool__(self) -> bool:
        return bool(self.fields)

    def offer(self, source: str, key: str, value: Any) -> None:
        """Keep `value` unless a source of higher precedence already gave `key`."""
        if value is None or value == "" or value == [] or value == {}:
            return
        held = self.sources.get(key)
        if held is None or SOURCES.index(source) < SOURCES.index(held):
            self.fields[key] = value
            self.sources[key] = source

    def add_parameters(self, source: str, params: dict[str, Any]) -> None:
        """Parameters merge key by key (an earlier source keeps its keys)."""
        new = {k: v for k, v in params.items() if v is not None and k not in self.fields.get("parameters", {})}
        if not new:
            return
        self.fields["parameters"] = {**self.fields.get("parameters", {}), **new}
        labels = [s for s in self.sources.get("parameters", "").split(",") if s]
        self.sources["parameters"] = ",".join([*labels, source])

    @property
    def labels(self) -> list[str]:
        return sorted({s for v in self.sources.values() for s in v.split(",")})


def strip_weight_ext(name: str) -> str:
    """``sd_xl_base_1.0.safetensors`` → ``sd_xl_base_1.0`` (A1111 names models without it)."""
    return _WEIGHT_EXT.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()


def _number(text: str) -> int | float | str:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_a1111(text: str) -> dict[str, Any]:
    """The ``parameters`` text: prompt lines, ``Negative prompt:`` lines, then one line of
    ``Key: value`` pairs. Returns sidecar-shaped fields (prompt, seed, model, parameters)."""
    lines = text.strip().split("\n")
    settings: dict[str, str] = {}
    if lines and len(_PARAM.findall(lines[-1])) >= 3:
        settings = {k.strip(): v.strip() for k, v in _PARAM.findall(lines.pop())}
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    out: dict[str, Any] = {"prompt": "\n".join(prompt).strip()}
    params: dict[str, Any] = {}
    if negative:
        params["negative_prompt"] = "\n".join(negative).strip()
    for key, raw in settings.items():
        value = raw[1:-1].replace('\\"', '"') if raw.startswith('"') and raw.endswith('"') else raw
        if key == "Seed":
            try:
                out["seed"] = int(value)
            except ValueError:
                params["seed_text"] = value
        elif key == "Model":
            out["model"] = strip_weight_ext(value)
        else:
            params[key.lower().replace(" ", "_")] = _number(value)
    if "model" not in out and params.get("model_hash"):
        out["model"] = f"hash:{params['model_hash']}"
    loras = [{"name": m.group(1).strip(), **({"weight": float(m.group(2))} if m.group(2) else {})}
             for m in _LORA_TAG.finditer(out["prompt"])]
    if loras:
        params["loras"] = loras
    out["parameters"] = params
    return out


def _node(graph: dict, link: Any) -> dict | None:
    """The node a ComfyUI input links to (``["6", 0]``), if any."""
    if isinstance(link, list) and link and isinstance(graph.get(str(link[0])), dict):
        return graph[str(link[0])]
    return None


def _text_of(graph: dict, link: Any, depth: int = 0) -> str | None:
    """Prompt text behind a conditioning input: the nearest text encoder upstream."""
    node = _node(graph, link)
    if node is None or depth > 8:
        return None
    inputs = node.get("inputs") or {}
    for key in ("text", "text_g", "prompt"):
        if isinstance(inputs.get(key), str):
            return inputs[key]
    for key in ("conditioning", "conditioning_1", "positive"):
        if key in inputs:
            found = _text_of(graph, inputs[key], depth + 1)
            if found is not None:
                return found
    return None


def parse_comfyui(graph: Any) -> tuple[dict[str, Any], list[str]]:
    """ComfyUI's API ``prompt`` graph → (sidecar-shaped fields, input file names)."""
    if not isinstance(graph, dict):
        return {}, []
    nodes = [n for n in graph.values() if isinstance(n, dict) and isinstance(n.get("inputs"), dict)]
    out: dict[str, Any] = {}
    params: dict[str, Any] = {}
    loras, inputs = [], []
    for node in nodes:
        kind, ins = str(node.get("class_type", "")), node["inputs"]
        if kind.startswith("KSampler") or kind.startswith("SamplerCustom"):
            seed = ins.get("seed", ins.get("noise_seed"))
            if isinstance(seed, int) and not isinstance(seed, bool) and "seed" not in out:
                out["seed"] = seed
            for key in ("steps", "cfg", "sampler_name", "scheduler", "denoise"):
                if isinstance(ins.get(key), (int, float, str)) and key not in params:
                    params[key] = ins[key]
            positive, negative = _text_of(graph, ins.get("positive")), _text_of(graph, ins.get("negative"))
            if positive is not None and "prompt" not in out:
                out["prompt"] = positive
            if negative:
                params.setdefault("negative_prompt", negative)
        elif kind.startswith("CheckpointLoader") or kind in ("UNETLoader", "UnetLoaderGGUF"):
            name = ins.get("ckpt_name") or ins.get("unet_name")
            if isinstance(name, str) and "model" not in out:
                out["model"] = strip_weight_ext(name)
        elif kind.startswith("LoraLoader"):
            if isinstance(ins.get("lora_name"), str):
                weight = ins.get("strength_model")
                loras.append({"name": strip_weight_ext(ins["lora_name"]),
                              **({"weight": weight} if isinstance(weight, (int, float)) else {})})
        elif kind in ("LoadImage", "LoadImageMask"):
            if isinstance(ins.get("image"), str):
                inputs.append(ins["image"])
    if loras:
        params["loras"] = loras
    if params:
        out["parameters"] = params
    return out, inputs


def _json(text: Any) -> Any:
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _user_comment(raw: Any) -> str | None:
    """EXIF UserComment: an 8-byte charset tag, then the text (A1111 writes UNICODE, UTF-16)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    tag, body = raw[:8], raw[8:]
    if tag.startswith(b"UNICODE"):
        enc = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(enc, errors="replace").rstrip("\x00")
    return body.decode("utf-8", errors="replace").rstrip("\x00")


def _exif_time(value: Any) -> str | None:
    try:
        return datetime.strptime(str(value).strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return None


def _read_xmp(found: Embedded, packet: Any) -> None:
    try:
        props = X.parse_xmp(packet)
    except ValueError as exc:
        found.extra["xmp_error"] = str(exc)[:200]
        return
    ap = {k[len(X.AP) + 2:]: v for k, v in props.items() if k.startswith(f"{{{X.AP}}}")}
    for key in ("model", "prompt", "created_by", "project"):
        found.offer("xmp", key, X.first(ap.get(key)))
    seed = X.first(ap.get("seed"))
    if seed is not None and re.fullmatch(r"-?\d+", seed):
        found.offer("xmp", "seed", int(seed))
    found.offer("xmp", "created_by", X.first(props.get(f"{{{X.DC}}}creator")))
    found.offer("xmp", "prompt", X.first(props.get(f"{{{X.DC}}}description")))
    subjects = props.get(f"{{{X.DC}}}subject")
    found.offer("xmp", "tags", [s for s in subjects if s.strip()] if isinstance(subjects, list) else None)
    found.offer("xmp", "created_at", X.first(props.get(f"{{{X.XMP}}}CreateDate")))
    found.digital_source_type = X.first(props.get(f"{{{X.IPTC_EXT}}}DigitalSourceType"))
    # A copy this project exported names the version it came from: that version is its input.
    if X.first(ap.get("sha256")):
        found.inputs.append(X.first(ap["sha256"]))


def read_embedded(source: bytes | Path, fmt: str) -> Embedded:
    """Generation metadata embedded in an image (`fmt` as detected: png, jpeg, webp, gif)."""
    from PIL import Image

    found = Embedded()
    if fmt not in ("png", "jpeg", "webp", "gif"):
        return found
    try:
        with (io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")) as f, \
                Image.open(f, formats=[fmt.upper()]) as img:
            info = dict(img.info)
            # A PNG's own getexif() decodes every pixel to look past IDAT for an eXIf chunk; the base
            # method reads what the chunks before IDAT gave (eXIf, ImageMagick's raw-profile text, XMP).
            exif = Image.Image.getexif(img) if fmt == "png" else img.getexif()
            exif_ifd = exif.get_ifd(0x8769) if exif else {}
    except Exception as exc:  # a decoder's own error on hostile bytes: the format check reports it
        found.extra["embedded_error"] = f"{type(exc).__name__}: {exc}"[:200]
        return found
    packet = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if packet:
        _read_xmp(found, packet)
    a1111 = info.get("parameters")
    if not isinstance(a1111, str):
        comment = _user_comment(exif_ifd.get(0x9286))
        a1111 = comment if comment and "Steps:" in comment else None
    if isinstance(a1111, str) and len(a1111) <= _MAX_TEXT:
        parsed = parse_a1111(a1111)
        for key in ("prompt", "seed", "model"):
            found.offer("a1111", key, parsed.get(key))
        found.add_parameters("a1111", parsed["parameters"])
    graph = _json(info.get("prompt"))
    if graph is not None:
        parsed, inputs = parse_comfyui(graph)
        for key in ("prompt", "seed", "model"):
            found.offer("comfyui", key, parsed.get(key))
        found.add_parameters("comfyui", parsed.get("parameters", {}))
        found.inputs += inputs
        found.extra["comfyui_prompt"] = graph
    workflow = _json(info.get("workflow"))
    if workflow is not None:
        found.extra["comfyui_workflow"] = workflow
    if exif:
        found.offer("exif", "created_by", _clean(exif.get(0x013B)))
        found.offer("exif", "prompt", _clean(exif.get(0x010E)))
        found.offer("exif", "created_at", _exif_time(exif_ifd.get(0x9003)) if exif_ifd.get(0x9003) else None)
    return found


def _clean(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value.strip("\x00 ") if isinstance(value, str) else None
