"""Export: a copy of a stored version that declares itself AI-generated.

The copy carries, in XMP, the IPTC digital source type ``trainedAlgorithmicMedia`` (plus the
IPTC 2025 AI fields: system used, prompt, prompt writer) and the generation facts — model, seed,
asset id, version and the sha256 of the stored original — under the project's namespace. PNG,
JPEG and WebP get the packet inside the file (exiv2 edits metadata only: the image data is the
stored original's); other formats, and files whose original carries a C2PA manifest that is not
re-signed (an edit would break its hash binding), get it next to the file as ``<path>.xmp``.
With a signing certificate configured, a C2PA manifest saying the same is signed into the copy,
which is then read back and validated by the same library.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from asset_pipeline.provenance import xmp as X
from asset_pipeline.provenance.credentials import SIGNABLE, SigningConfig, generation_manifest, read_credentials, sign
from asset_pipeline.store import ObjectStore

XMP_INSIDE = ("png", "jpeg", "webp")
_XMP_INSIDE_MAX = 512 * 1024 * 1024  # exiv2 edits in memory


@dataclass(frozen=True)
class ExportResult:
    path: Path
    asset_id: str
    version: int
    sha256: str                  # of the stored original (the copy differs by its metadata)
    xmp: str                     # "embedded", or the path of the .xmp file written beside it
    signed: bool                 # a C2PA manifest was signed into the copy
    c2pa_state: str | None       # the copy's manifest as c2pa validates it (None: no manifest)
    digital_source_type: str = X.TRAINED_ALGORITHMIC_MEDIA


def generation_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What the copy states about its making (`row`: a version row with the asset's project)."""
    created = row.get("created_at")
    return {k: v for k, v in {
        "asset_id": row["asset_id"], "version": row["version"], "sha256": row["sha256"],
        "model": row.get("model"), "seed": row.get("seed"), "prompt": row.get("prompt"),
        "created_by": row.get("created_by"), "project": row.get("project"),
        "adapters": list(row.get("adapters") or []),
        "created_at": created.isoformat() if isinstance(created, datetime) else created,
    }.items() if v is not None}


def xmp_properties(facts: dict[str, Any]) -> dict[str, Any]:
    """exiv2 keys → values for the copy's XMP packet."""
    ap = f"Xmp.{X.AP_PREFIX}"
    props: dict[str, Any] = {
        "Xmp.iptcExt.DigitalSourceType": X.TRAINED_ALGORITHMIC_MEDIA,
        f"{ap}.assetId": facts["asset_id"], f"{ap}.version": str(facts["version"]), f"{ap}.sha256": facts["sha256"],
    }
    for key in ("model", "seed", "prompt", "created_by", "project", "created_at"):
        if key in facts:
            props[f"{ap}.{key}"] = str(facts[key])
    if facts.get("adapters"):
        props[f"{ap}.adapters"] = list(facts["adapters"])
    if facts.get("model"):
        props["Xmp.iptcExt.AISystemUsed"] = str(facts["model"])
        props["Xmp.xmp.CreatorTool"] = str(facts["model"])
    if facts.get("prompt"):
        props["Xmp.iptcExt.AIPromptInformation"] = str(facts["prompt"])
    if facts.get("created_by"):
        props["Xmp.iptcExt.AIPromptWriterName"] = str(facts["created_by"])
    return props


def export_copy(store: ObjectStore, row: dict[str, Any], dest: str | os.PathLike[str],
                signing: SigningConfig | None = None, trust_anchors: bytes | None = None) -> ExportResult:
    """Write the declared copy of version `row` to `dest` (atomically: a temp file renamed into place)."""
    dest = Path(dest)
    fmt = row["format"]
    facts = generation_facts(row)
    props = xmp_properties(facts)
    will_sign = signing is not None and fmt in SIGNABLE
    keep_bytes = row.get("c2pa_state") is not None and not will_sign  # its manifest must stay intact
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".export-") as tmp:
        staged = Path(tmp) / "staged"
        xmp = "embedded"
        if fmt in XMP_INSIDE and row["size_bytes"] <= _XMP_INSIDE_MAX and not keep_bytes:
            staged.write_bytes(X.write_xmp(store.read_bytes(row["sha256"]), props))
        else:
            with store.open(row["sha256"]) as src, open(staged, "wb") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
            side = dest.with_name(dest.name + ".xmp")
            staged_side = Path(tmp) / "side.xmp"
            staged_side.write_bytes(X.write_xmp(X.EMPTY_PACKET, props))
            os.replace(staged_side, side)  # renamed into place: never written through a link (issue 10)
            xmp = str(side)
        final = Path(tmp) / "final"
        if will_sign:
            with open(staged, "rb") as src, open(final, "w+b") as out:
                sign(src, out, fmt, generation_manifest(facts, dest.name), signing)
        else:
            staged.rename(final)
        os.replace(final, dest)
    creds = read_credentials(dest, fmt, trust_anchors)
    return ExportResult(dest, row["asset_id"], row["version"], row["sha256"], xmp, will_sign,
                        creds.state if creds else None)
