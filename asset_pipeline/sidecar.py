"""Generation metadata that travels next to each generator output as ``<file>.meta.json``.

Every rejection names the field at fault. Names and projects are data, never paths: they are
only ever used as values in tables, so a sidecar cannot steer where anything is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asset_pipeline.errors import InputRejected

SIDECAR_SUFFIX = ".meta.json"
REQUIRED = ("model", "prompt", "seed", "created_by", "project")
OPTIONAL = ("parameters", "tags", "name", "asset_id", "created_at", "change_description")
_MAX_SIDECAR = 1024 * 1024
_MAX_NAME = 512


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
    if len(value) > _MAX_NAME and key != "prompt":
        raise InputRejected(f"sidecar field '{key}' is longer than {_MAX_NAME} characters", key)
    if key != "prompt" and _CONTROL.search(value):
        raise InputRejected(f"sidecar field '{key}' contains control characters", key)
    return value


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
    if len(raw) > _MAX_SIDECAR:
        raise InputRejected("sidecar is larger than 1 MiB", "sidecar")
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputRejected(f"sidecar is not valid JSON: {exc}", "sidecar") from exc
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
