"""One set of generation metadata from a sidecar and what the file embeds: the sidecar wins
field by field (parameters key by key), and every field remembers where it came from."""

from __future__ import annotations

import json
from typing import Any

from asset_pipeline.errors import InputRejected
from asset_pipeline.provenance.embedded import Embedded
from asset_pipeline.sidecar import REQUIRED, SIDECAR_SUFFIX, Sidecar, load_document, parse_sidecar

_FIELDS = ("model", "prompt", "seed", "created_by", "project", "parameters", "tags", "created_at")


def sidecar_document(raw: bytes) -> dict[str, Any]:
    """The sidecar as a JSON object; a malformed one is rejected with the sidecar's own reason
    (the same plain-JSON rules as a sidecar alone: size, repeated keys, NaN, nesting)."""
    doc = load_document(raw)
    if not isinstance(doc, dict):
        raise InputRejected("sidecar must be a JSON object", "sidecar")
    return doc


def resolve(rel: str, sidecar_raw: bytes | None, embedded: Embedded) -> tuple[Sidecar, dict[str, str]]:
    """(Sidecar, {field: source}) for the input at inbox path `rel`. Without embedded metadata
    this is exactly the sidecar's own validation. Raises InputRejected naming the field."""
    if not embedded:
        if sidecar_raw is None:
            raise InputRejected(f"no sidecar: expected '{rel}{SIDECAR_SUFFIX}' with the generation metadata "
                                "(and the file embeds none)", "sidecar")
        sidecar = parse_sidecar(sidecar_raw)
        return sidecar, {k: "sidecar" for k in _FIELDS if _given(getattr(sidecar, k))}
    doc = sidecar_document(sidecar_raw) if sidecar_raw is not None else {}
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in embedded.fields.items():
        merged[key], sources[key] = value, embedded.sources[key]
    for key, value in doc.items():
        if value is None:
            continue
        if key == "parameters" and isinstance(value, dict) and isinstance(merged.get("parameters"), dict):
            merged[key] = {**merged[key], **value}
            sources[key] = f"sidecar,{sources[key]}" if value.keys() < merged[key].keys() else "sidecar"
        else:
            merged[key], sources[key] = value, "sidecar"
    for key in REQUIRED:
        if merged.get(key) is None:
            where = f"the sidecar nor the embedded metadata ({', '.join(embedded.labels)})" if sidecar_raw \
                else f"a sidecar ('{rel}{SIDECAR_SUFFIX}') nor the embedded metadata ({', '.join(embedded.labels)})"
            raise InputRejected(f"neither {where} gives required field '{key}'", key)
    try:
        sidecar = parse_sidecar(json.dumps(merged).encode())
    except InputRejected as exc:
        source = sources.get(exc.field or "", "sidecar")
        if source == "sidecar" or exc.field is None:
            raise
        raise InputRejected(exc.reason.replace("sidecar field", f"embedded ({source}) field"), exc.field) from exc
    sidecar.extra.update(embedded.extra)
    return sidecar, {k: sources[k] for k in _FIELDS if k in sources}


def _given(value: Any) -> bool:
    return value is not None and value != [] and value != {}
