"""The provenance an ingest keeps with each version: where every metadata field came from, the
IPTC digital source type, C2PA state, perceptual hash, adapters and inputs. Runs in the ingest's
worker processes, so it only imports what it needs when a file calls for it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asset_pipeline.provenance.credentials import Credentials, read_credentials
from asset_pipeline.provenance.embedded import Embedded, read_embedded
from asset_pipeline.provenance.metadata import resolve
from asset_pipeline.sidecar import Sidecar

_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


@dataclass
class Provenance:
    sources: dict[str, str] = field(default_factory=dict)
    digital_source_type: str | None = None
    inputs: list[str] = field(default_factory=list)
    phash: int | None = None
    credentials: Credentials | None = None


def image_format(head: bytes) -> str | None:
    """png, jpeg, webp or gif from the first bytes (the formats that carry generator metadata)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return next((fmt for magic, fmt in _IMAGE_MAGIC if head.startswith(magic)), None)


def generation_metadata(rel: str, sidecar_raw: bytes | None, source: bytes | Path) -> tuple[Sidecar, Provenance]:
    """The merged sidecar + embedded metadata of one input (raises InputRejected naming the field)."""
    if isinstance(source, bytes):
        head = source[:16]
    else:
        with open(source, "rb") as f:
            head = f.read(16)
    fmt = image_format(head)
    embedded = read_embedded(source, fmt) if fmt else Embedded()
    sidecar, sources = resolve(rel, sidecar_raw, embedded)
    declared = sidecar.extra.get("digital_source_type")
    return sidecar, Provenance(sources, declared if isinstance(declared, str) else embedded.digital_source_type,
                               list(dict.fromkeys(embedded.inputs)))


def add_content_facts(prov: Provenance, source: bytes | Path, fmt: str, phash: int | None) -> Provenance:
    """The pHash the format check computed from its own decode (None for what is not an image,
    or an image Pillow decoded but could not resample), and C2PA for files that carry a manifest
    (whole-read files: the marker is looked for in memory; a streamed large file is not checked)."""
    prov.phash = phash
    if isinstance(source, bytes):
        prov.credentials = read_credentials(source, fmt)
        if prov.credentials and not prov.digital_source_type:
            prov.digital_source_type = prov.credentials.summary.get("digital_source_type")
    return prov


def version_columns(prov: Provenance | None, parameters: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The provenance columns of an `asset_versions` row."""
    from asset_pipeline.provenance.lineage import adapters_of, inputs_of

    prov = prov or Provenance()
    creds = prov.credentials
    return {
        "phash": prov.phash, "metadata_sources": json.dumps(prov.sources, sort_keys=True) if prov.sources else None,
        "digital_source_type": prov.digital_source_type,
        "c2pa_state": creds.state if creds else None, "c2pa_summary": creds.to_json() if creds else None,
        "adapters": adapters_of(parameters),
        "inputs": list(dict.fromkeys([*prov.inputs, *inputs_of(parameters, extra)])),
    }
