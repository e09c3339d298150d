"""Generation metadata that travels next to each generator output as ``<file>.meta.json``.

Every rejection names the field at fault. Names and projects are data, never paths: they are
only ever used as values in tables, so a sidecar cannot steer where anything is written.

A name taken from the inbox path obeys the same rules as a sidecar `name` (no control or
bidirectional-override characters, at most 512 characters). Names and projects are Unicode
NFC-normalised before they make an asset's identity, so ``café`` written by macOS (decomposed)
and by Linux (composed) is one asset, not two look-alikes. The JSON itself is held to plain
JSON: no repeated keys (tools disagree on which one wins), no NaN/Infinity, at most 32 levels of
nesting, at most 1 MiB.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asset_pipeline.errors import InputRejected
from asset_pipeline.identity import default_name

SIDECAR_SUFFIX = ".meta.json"
REQUIRED = ("model", "prompt", "seed", "created_by", "project")
OPTIONAL = ("parameters", "tags", "name", "asset_id", "created_at", "change_description")
MAX_SIDECAR_BYTES = 1024 * 1024
MAX_DEPTH = 32
_MAX_NAME = 512
_IDENTITY = ("name", "project")  # fields that make an asset id: NFC-normalised


@dataclass
class Sidecar:
    model: str
    prompt: str
    seed: int
    created_by: str
    project: str
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    name: str | None = None
    asset_id: str | None = None
    created_at: datetime | None = None
    change_description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sidecar_path_for(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # exactly Unicode category Cc
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")  # overrides and isolates: 'gnp.exe' shown as 'exe.png'


def _check_label(value: str, what: str, key: str) -> str:
    """The rules every short label (name, project, model, user, tag) follows, wherever it came from."""
    if len(value) > _MAX_NAME:
        raise InputRejected(f"{what} is longer than {_MAX_NAME} characters", key)
    if _CONTROL.search(value):
        raise InputRejected(f"{what} contains control characters", key)
    if _BIDI.search(value):
        raise InputRejected(f"{what} contains bidirectional override characters", key)
    return unicodedata.normalize("NFC", value) if key in _IDENTITY else value


def name_from_path(rel: str) -> str:
    """The default asset name (the inbox path without its extension), held to the rules of a
    sidecar `name`: a newline in a file name is refused just as in the sidecar."""
    name = default_name(rel)
    return _check_label(name, f"the name {name!r} taken from the inbox path (set 'name' in the sidecar or rename "
                              "the file)", "name")


def _text(doc: dict, key: str, *, required: bool, allow_empty: bool = False) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise InputRejected(f"sidecar is missing required field '{key}'", key)
        return None
    if not isinstance(value, str):
        raise InputRejected(f"sidecar field '{key}' must be a string, got {type(value).__name__}", key)
    value = value.strip()
    if not value and not allow_empty:
        raise InputRejected(f"sidecar field '{key}' is empty", key)
    return value if key == "prompt" else _check_label(value, f"sidecar field '{key}'", key)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise InputRejected(f"sidecar repeats the key {key!r} (tools disagree on which one counts)", "sidecar")
        seen.add(key)
    return dict(pairs)


def _not_json(constant: str) -> Any:
    raise InputRejected(f"sidecar holds {constant}, which is not JSON", "sidecar")


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed document, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def load_document(raw: bytes) -> Any:
    """The parsed JSON of a sidecar, held to plain JSON (size, repeated keys, NaN, nesting), or
    InputRejected (field ``sidecar``) saying which rule it broke."""
    if len(raw) > MAX_SIDECAR_BYTES:
        raise InputRejected("sidecar is larger than 1 MiB", "sidecar")
    try:
        doc = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_not_json)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputRejected(f"sidecar is not valid JSON: {exc}", "sidecar") from exc
    except RecursionError as exc:
        raise InputRejected(f"sidecar is nested more than {MAX_DEPTH} levels deep", "sidecar") from exc
    if _depth(doc) > MAX_DEPTH:
        raise InputRejected(f"sidecar is nested more than {MAX_DEPTH} levels deep", "sidecar")
    return doc


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InputRejected("sidecar field 'created_at' must be an ISO 8601 string", "created_at")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputRejected(f"sidecar field 'created_at' is not ISO 8601: {value!r}", "created_at") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def parse_sidecar(raw: bytes) -> Sidecar:
    """Validate a sidecar document; raises InputRejected naming the offending field."""
    doc = load_document(raw)
    if not isinstance(doc, dict):
        raise InputRejected("sidecar must be a JSON object", "sidecar")

    seed = doc.get("seed")
    if seed is None:
        raise InputRejected("sidecar is missing required field 'seed'", "seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
        raise InputRejected(f"sidecar field 'seed' must be a 64-bit integer, got {seed!r}", "seed")
    parameters = doc.get("parameters", {}) or {}
    if not isinstance(parameters, dict):
        raise InputRejected("sidecar field 'parameters' must be an object", "parameters")
    tags = doc.get("tags", []) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise InputRejected("sidecar field 'tags' must be a list of non-empty strings", "tags")
    for tag in tags:
        _check_label(tag, f"sidecar tag {tag!r}", "tags")

    return Sidecar(
        model=_text(doc, "model", required=True),
        prompt=_text(doc, "prompt", required=True, allow_empty=True),
        seed=seed,
        created_by=_text(doc, "created_by", required=True),
        project=_text(doc, "project", required=True),
        parameters=parameters,
        tags=sorted({t.strip() for t in tags}),
        name=_text(doc, "name", required=False),
        asset_id=_text(doc, "asset_id", required=False),
        created_at=_timestamp(doc["created_at"]) if doc.get("created_at") is not None else None,
        change_description=_text(doc, "change_description", required=False, allow_empty=True),
        extra={k: v for k, v in doc.items() if k not in REQUIRED and k not in OPTIONAL},
    )
