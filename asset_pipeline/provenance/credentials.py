"""Content credentials (C2PA) through the reference library, c2pa-python: read and validate a
manifest at ingest, sign one on export.

Validation is offline. Without trust anchors, a manifest whose signature and hashes check out is
``Valid`` (its signer is not judged: c2pa reports ``signingCredential.untrusted``); with anchors
(`Settings.c2pa_trust_anchors`, a PEM file) a signer that chains to one is ``Trusted``. OCSP
revocation is not fetched, and signatures carry a time-stamp only when a TSA URL is configured.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif",
        "wav": "audio/wav", "mp3": "audio/mpeg", "mp4": "video/mp4", "m4a": "audio/mp4", "flac": "audio/flac"}
# Formats c2pa can embed a signed manifest into (a subset of what it reads).
SIGNABLE = ("png", "jpeg", "webp", "gif", "wav", "mp3", "mp4", "m4a")
MARKER = b"c2pa"  # the JUMBF label of every manifest store: no marker, no manifest
GENERATION_ASSERTION = "org.asset-pipeline.generation"


@dataclass(frozen=True)
class SigningConfig:
    """A certificate chain (leaf first, PEM) and its private key; `alg` es256, ps256, …"""

    cert_chain: bytes
    private_key: bytes
    alg: str = "es256"
    tsa_url: str | None = None

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, alg: str = "es256",
                   tsa_url: str | None = None) -> SigningConfig:
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), alg.lower(), tsa_url)


@dataclass(frozen=True)
class Credentials:
    """What a manifest store says, in the form kept with a version."""

    state: str              # Valid, Trusted, Invalid — or Unreadable when c2pa cannot parse it
    summary: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(self.summary, sort_keys=True, default=str)


def _context(trust_anchors: bytes | None):
    import c2pa

    if not trust_anchors:
        return None
    return c2pa.Context.from_dict({"trust": {"trust_anchors": trust_anchors.decode()}})


def summarize(reader: Any) -> Credentials:
    """State and a compact summary of the active manifest (who signed, what it declares)."""
    active = reader.get_active_manifest() or {}
    results = reader.get_validation_results() or {}
    failures = sorted({f.get("code", "") for part in results.values() if isinstance(part, dict)
                       for f in part.get("failure", []) or []})
    actions: list[str] = []
    source_type = None
    generation: dict | None = None
    for assertion in active.get("assertions", []) or []:
        label, data = assertion.get("label", ""), assertion.get("data") or {}
        if label.startswith("c2pa.actions"):
            for action in data.get("actions", []) or []:
                actions.append(action.get("action", ""))
                source_type = source_type or action.get("digitalSourceType")
        elif label == GENERATION_ASSERTION:
            generation = data
    signature = active.get("signature_info") or {}
    generator = (active.get("claim_generator_info") or [{}])[0]
    summary = {
        "manifest": active.get("label"), "title": active.get("title"),
        "claim_generator": active.get("claim_generator") or generator.get("name"),
        "signer": signature.get("common_name") or signature.get("issuer"), "issuer": signature.get("issuer"),
        "signed_at": signature.get("time"), "digital_source_type": source_type, "actions": actions,
        "assertions": [a.get("label") for a in active.get("assertions", []) or []],
        "ingredients": len(active.get("ingredients", []) or []), "failures": failures,
    }
    if generation is not None:
        summary["generation"] = generation
    return Credentials(reader.get_validation_state() or "Unknown", summary)


def read_credentials(source: bytes | Path | BinaryIO, fmt: str, trust_anchors: bytes | None = None) \
        -> Credentials | None:
    """The manifest store's credentials, or None when the file has none. Never raises for a bad
    manifest: that is a finding (`Unreadable`, with c2pa's message), not a crash."""
    if fmt not in MIME:
        return None
    if isinstance(source, bytes) and MARKER not in source:
        return None
    import c2pa

    stream = io.BytesIO(source) if isinstance(source, bytes) else (
        open(source, "rb") if isinstance(source, Path) else source)
    try:
        reader = c2pa.Reader.try_create(MIME[fmt], stream, None, _context(trust_anchors))
        if reader is None:
            return None
        with reader:
            return summarize(reader)
    except c2pa.C2paError as exc:
        return Credentials("Unreadable", {"error": str(exc)[:500]})
    finally:
        if isinstance(source, Path):
            stream.close()


def generation_manifest(facts: dict[str, Any], title: str) -> dict[str, Any]:
    """A manifest that declares the asset AI-generated (c2pa.created, IPTC trainedAlgorithmicMedia,
    the model as software agent) and carries the generation facts as the project's assertion."""
    from importlib.metadata import PackageNotFoundError, version

    from asset_pipeline.provenance.xmp import TRAINED_ALGORITHMIC_MEDIA

    try:
        ours = version("asset-pipeline")
    except PackageNotFoundError:  # a source checkout that was never installed
        ours = "unknown"
    return {
        "claim_generator_info": [{"name": "asset_pipeline", "version": ours}],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": str(facts.get("model") or "unknown")}}]}},
            {"label": GENERATION_ASSERTION, "data": facts},
        ],
    }


def sign(src: BinaryIO, dest: BinaryIO, fmt: str, manifest: dict[str, Any], signing: SigningConfig) -> None:
    """Write `src` with `manifest` signed and embedded to `dest` (opened w+b)."""
    import c2pa

    info = c2pa.C2paSignerInfo(alg=signing.alg.encode(), sign_cert=signing.cert_chain,
                               private_key=signing.private_key,
                               ta_url=signing.tsa_url.encode() if signing.tsa_url else None)
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        builder.sign(signer, MIME[fmt], src, dest)
