"""Issue 14: embedded generation metadata, content credentials (C2PA), lineage, recall, pHash,
storage attribution — on files the tests make (Pillow text chunks/EXIF, exiv2 XMP, real C2PA
signing with a certificate chain made here), through real Delta/DuckDB/Dagster."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from asset_pipeline import Catalog, Settings
from asset_pipeline.cli import main
from asset_pipeline.definitions import build_definitions
from asset_pipeline.identity import asset_id_for
from asset_pipeline.provenance import xmp as X
from asset_pipeline.provenance.credentials import SigningConfig, read_credentials, sign
from asset_pipeline.provenance.embedded import parse_a1111, parse_comfyui
from asset_pipeline.provenance.phash import hamming, pairs_sql, phash
from asset_pipeline.samples import a1111_parameters, comfyui_prompt, render_image
from asset_pipeline.sidecar import SIDECAR_SUFFIX

from .conftest import materialization_metadata

SUNSET = asset_id_for("research", "images/sunset")
MARKETING = asset_id_for("marketing", "marketing/sunset")
FOREST = asset_id_for("research", "images/forest")
ICON = asset_id_for("research", "images/icon")
PORTRAIT = asset_id_for("research", "images/portrait")
HERO = asset_id_for("research", "images/hero")
CITY = asset_id_for("research", "images/city")
CHIME = asset_id_for("research", "audio/chime")


# --- a certificate chain of our own (c2pa needs a CA-issued ES256 leaf with signing usages) -------
@pytest.fixture(scope="module")
def cert_chain(tmp_path_factory) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "asset_pipeline tests")])

    def usage(**on: bool) -> x509.KeyUsage:
        keys = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{k: on.get(k, False) for k in keys})

    now = dt.datetime.now(dt.UTC)
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name("Test Root CA")).issuer_name(name("Test Root CA"))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("Test Signer")).issuer_name(root.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("pki")
    pem = serialization.Encoding.PEM
    (d / "chain.pem").write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    (d / "root.pem").write_bytes(root.public_bytes(pem))
    (d / "key.pem").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return {"cert": d / "chain.pem", "key": d / "key.pem", "anchors": d / "root.pem"}


def _drop(inbox: Path, rel: str, data: bytes, sidecar: dict | None = None) -> None:
    path = inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if sidecar is not None:
        path.with_name(path.name + SIDECAR_SUFFIX).write_text(json.dumps(sidecar))


def _png(seed: int, chunks: dict[str, str], size=(96, 64)) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in chunks.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.open(io.BytesIO(render_image(seed, size))).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _version(cat: Catalog, asset_id: str, version: int = 1) -> dict:
    return cat.get_version(asset_id, version)


# --- embedded metadata ----------------------------------------------------------------------
def test_a1111_text_and_comfyui_graph_are_parsed() -> None:
    text = ("a red rocket <lora:rocket-style:0.8>, cinematic\nsecond line\n"
            "Negative prompt: blurry,\nlow quality\nSteps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, "
            'Seed: 4242, Size: 512x768, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "rocket-style: '
            'ab12, other: cd34", Version: v1.6.0')
    got = parse_a1111(text)
    assert got["prompt"] == "a red rocket <lora:rocket-style:0.8>, cinematic\nsecond line"
    assert (got["seed"], got["model"]) == (4242, "sd_xl_base_1.0")
    p = got["parameters"]
    assert p["negative_prompt"] == "blurry,\nlow quality" and p["steps"] == 30 and p["cfg_scale"] == 6.5
    assert p["lora_hashes"] == "rocket-style: ab12, other: cd34" and p["loras"] == [{"name": "rocket-style",
                                                                                    "weight": 0.8}]
    fields, inputs = parse_comfyui(comfyui_prompt("a fox", 7, "models/flux1-dev.safetensors", "ink.safetensors",
                                                  init_image="fox-sketch.png"))
    assert (fields["prompt"], fields["seed"], fields["model"]) == ("a fox", 7, "flux1-dev")
    assert fields["parameters"]["loras"] == [{"name": "ink", "weight": 0.7}]
    assert fields["parameters"]["negative_prompt"] == "watermark, text" and inputs == ["fox-sketch.png"]
    assert parse_comfyui(["not", "a", "graph"]) == ({}, [])


def test_files_without_sidecars_ingest_from_what_they_embed(ingested: Catalog) -> None:
    forest, icon, portrait = (_version(ingested, i) for i in (FOREST, ICON, PORTRAIT))
    # A1111 parameters chunk + XMP (project, creator, subjects, create date)
    assert (forest["model"], forest["seed"], forest["prompt"]) == ("sd_xl_base_1.0", 12, "a misty pine forest at dawn")
    assert forest["created_by"] == "alice" and forest["tags"] == ["landscape"]
    assert json.loads(forest["parameters"])["sampler"] == "DPM++ 2M Karras"
    assert json.loads(forest["metadata_sources"]) == {
        "model": "a1111", "prompt": "a1111", "seed": "a1111", "parameters": "a1111", "created_by": "xmp",
        "project": "xmp", "tags": "xmp", "created_at": "xmp"}
    assert forest["digital_source_type"] == X.TRAINED_ALGORITHMIC_MEDIA
    # ComfyUI prompt graph (+ workflow kept) and its LoRA and init image
    assert (icon["model"], icon["seed"], icon["adapters"]) == ("flux1-schnell", 13, ["flat-icons"])
    assert icon["inputs"] == ["images/sunset.png"] and json.loads(icon["metadata_sources"])["seed"] == "comfyui"
    assert json.loads(icon["extra"])["comfyui_workflow"]["last_node_id"] == 12
    # EXIF Artist + A1111 parameters in UserComment (a JPEG as A1111 writes it)
    assert (portrait["created_by"], portrait["seed"], portrait["model"]) == ("alice", 14, "sd_xl_base_1.0")
    assert json.loads(portrait["metadata_sources"])["created_by"] == "exif"
    assert ingested.asset(PORTRAIT)["project"] == "research"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_the_format_checks_decode_gives_the_files_phash(fmt: str) -> None:
    from asset_pipeline.formats import ValidationLimits, inspect_file

    frames = [Image.open(io.BytesIO(render_image(seed, (160, 120)))).convert("RGB") for seed in (81, 82)]
    out = io.BytesIO()
    frames[0].save(out, fmt, **({"save_all": True, "append_images": frames[1:]} if fmt in ("WEBP", "GIF") else {}))
    data = out.getvalue()
    info = inspect_file(data, ValidationLimits())
    assert info.phash is not None and info.phash == phash(data)  # the first frame's, as phash() reads it


def test_png_exif_and_the_phash_come_from_one_decode(catalog: Catalog, settings) -> None:
    """A PNG's eXIf chunk is read without decoding the picture (Pillow's getexif() would), and the
    stored pHash — taken from the format check's decode — is the file's pHash."""
    exif = Image.Exif()
    exif[0x013B] = "carol"  # Artist
    out = io.BytesIO()
    Image.open(io.BytesIO(render_image(71, (320, 240)))).save(out, "PNG", exif=exif)
    data = out.getvalue()
    inbox = Path(settings.inbox)
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "exif.png").write_bytes(data)
    (inbox / f"exif.png{SIDECAR_SUFFIX}").write_text(json.dumps({"project": "research", "prompt": "p",
                                                                 "model": "m", "seed": 1}))
    catalog.ingest()
    row = catalog.sql("select created_by, phash, metadata_sources from asset_versions").to_pylist()[0]
    assert row["created_by"] == "carol" and json.loads(row["metadata_sources"])["created_by"] == "exif"
    assert row["phash"] == phash(data)


def test_a_sidecar_wins_field_by_field(ingested: Catalog) -> None:
    hero = _version(ingested, HERO)
    sources = json.loads(hero["metadata_sources"])
    assert hero["seed"] == 16 and sources["seed"] == "sidecar"  # the embedded text says 99
    params = json.loads(hero["parameters"])
    assert params["steps"] == 4 and params["sampler"] == "euler_a"  # sidecar keys
    assert params["cfg_scale"] == 7 and sources["parameters"] == "sidecar,a1111"  # embedded keys it lacked
    assert hero["adapters"] == ["rocket-style"]
    city = _version(ingested, CITY)
    assert city["created_by"] == "alice"  # sidecar over the XMP's dc:creator 'carol'
    assert city["digital_source_type"] == X.TRAINED_ALGORITHMIC_MEDIA  # only the XMP said it
    assert _version(ingested, SUNSET)["metadata_sources"] and _version(ingested, SUNSET)["digital_source_type"] is None


def test_required_fields_nobody_gives_reject_naming_the_field(catalog: Catalog, settings) -> None:
    inbox = Path(settings.inbox)
    params = a1111_parameters("a lighthouse", 5, "sd_xl_base_1.0", (96, 64))
    _drop(inbox, "no-project.png", X.write_xmp(_png(1, {"parameters": params}), {"Xmp.dc.creator": ["eve"]}))
    _drop(inbox, "partial.png", _png(2, {"parameters": params}), {"project": "coast", "created_by": "dana"})
    hostile = X.write_xmp(_png(3, {"parameters": params}), {"Xmp.assetpipeline.project": "p" * 600,
                                                             "Xmp.dc.creator": ["eve"]})
    _drop(inbox, "hostile.png", hostile)
    summary = catalog.ingest()
    errors = {r["source_path"]: r for r in catalog.sql("select * from ingest_errors").to_pylist()}
    assert summary.new_versions == 1 and set(errors) == {"no-project.png", "hostile.png"}
    e = errors["no-project.png"]
    assert e["field"] == "project" and "\n" not in e["reason"]
    assert "no-project.png.meta.json" in e["reason"] and "'project'" in e["reason"] and "a1111, xmp" in e["reason"]
    assert Path(e["quarantine_path"]).exists()  # nothing lost
    assert errors["hostile.png"]["field"] == "project" and "embedded (xmp) field 'project'" in errors[
        "hostile.png"]["reason"]
    row = catalog.sql("select * from asset_versions").to_pylist()[0]
    assert (row["seed"], row["created_by"], json.loads(row["metadata_sources"])["project"]) == (5, "dana", "sidecar")


# --- content credentials ----------------------------------------------------------------------
def _signed_png(cert_chain, seed: int = 40) -> bytes:
    from asset_pipeline.provenance.credentials import generation_manifest

    out = io.BytesIO()
    sign(io.BytesIO(render_image(seed, (80, 60))), out, "png",
         generation_manifest({"model": "outside-gen", "seed": seed}, "outside.png"),
         SigningConfig.from_files(cert_chain["cert"], cert_chain["key"]))
    return out.getvalue()


def test_c2pa_manifests_are_read_and_validated_at_ingest(catalog: Catalog, settings, cert_chain) -> None:
    inbox = Path(settings.inbox)
    signed = _signed_png(cert_chain)
    meta = {"model": "outside-gen", "prompt": "p", "seed": 40, "created_by": "x", "project": "c2pa"}
    _drop(inbox, "signed.png", signed, meta)
    _drop(inbox, "tampered.png", X.write_xmp(signed, {"Xmp.dc.creator": ["mallory"]}), meta)
    catalog.ingest()
    rows = {r["source_path"]: r for r in catalog.sql("select * from asset_versions").to_pylist()}
    good, bad = rows["signed.png"], rows["tampered.png"]
    assert good["c2pa_state"] == "Valid"  # no trust anchors at ingest: intact, signer not judged
    summary = json.loads(good["c2pa_summary"])
    assert summary["signer"] == "Test Signer" and summary["actions"] == ["c2pa.created"]
    assert "signingCredential.untrusted" in summary["failures"]
    assert good["digital_source_type"] == X.TRAINED_ALGORITHMIC_MEDIA  # from the manifest's action
    assert bad["c2pa_state"] == "Invalid" and any("mismatch" in f for f in json.loads(bad["c2pa_summary"])["failures"])
    assert read_credentials(signed, "png", cert_chain["anchors"].read_bytes()).state == "Trusted"


def _xmp_of(path: Path) -> dict:
    with Image.open(path) as img:
        return X.parse_xmp(img.info["xmp"])


def test_export_declares_ai_generation_and_signs(ingested: Catalog, settings, cert_chain, tmp_path) -> None:
    unsigned = ingested.export(PORTRAIT, tmp_path / "plain.jpg")
    assert (unsigned.signed, unsigned.c2pa_state, unsigned.xmp) == (False, None, "embedded")
    props = _xmp_of(tmp_path / "plain.jpg")
    ap = f"{{{X.AP}}}"
    assert props[f"{{{X.IPTC_EXT}}}DigitalSourceType"] == X.TRAINED_ALGORITHMIC_MEDIA
    original = ingested.get(PORTRAIT).read()
    assert props[ap + "sha256"] == unsigned.sha256 == ingested.asset(PORTRAIT)["current_sha256"]
    assert (props[ap + "model"], props[ap + "seed"], props[ap + "assetId"], props[ap + "version"]) == \
        ("sd_xl_base_1.0", "14", PORTRAIT, "1")
    with Image.open(io.BytesIO(original)) as a, Image.open(tmp_path / "plain.jpg") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # metadata added, JPEG data untouched

    signing = Catalog(settings=Settings.from_env(home=settings.home, durable=False, c2pa_sign_cert=str(
        cert_chain["cert"]), c2pa_sign_key=str(cert_chain["key"]), c2pa_trust_anchors=str(cert_chain["anchors"])))
    r = signing.export(ICON, tmp_path / "out" / "icon.png")
    assert r.signed and r.c2pa_state == "Trusted" and r.xmp == "embedded"
    creds = read_credentials(tmp_path / "out" / "icon.png", "png")  # the reference library, no anchors
    assert creds.state == "Valid"
    facts = creds.summary["generation"]
    assert facts["sha256"] == ingested.asset(ICON)["current_sha256"] and facts["model"] == "flux1-schnell"
    assert (facts["asset_id"], facts["version"], facts["seed"]) == (ICON, 1, 13)
    assert creds.summary["digital_source_type"] == X.TRAINED_ALGORITHMIC_MEDIA
    assert _xmp_of(tmp_path / "out" / "icon.png")[f"{{{X.IPTC_EXT}}}DigitalSourceType"] == X.TRAINED_ALGORITHMIC_MEDIA
    # audio: the manifest inside, the XMP beside it
    wav = signing.export(CHIME, tmp_path / "chime.wav")
    assert wav.signed and wav.c2pa_state == "Trusted" and wav.xmp == str(tmp_path / "chime.wav.xmp")
    assert X.parse_xmp((tmp_path / "chime.wav.xmp").read_bytes())[ap + "assetId"] == CHIME
    # an exported copy re-ingested names the version it came from: lineage follows it
    _drop(Path(settings.inbox), "reused/icon-copy.png", (tmp_path / "out" / "icon.png").read_bytes())
    ingested.ingest()
    copy = asset_id_for("research", "reused/icon-copy")
    assert ingested.lineage(copy)["versions"][0]["inputs"][0]["matches"] == [{"asset_id": ICON, "version": 1}]


def test_cli_get_output_writes_the_declaring_copy(ingested: Catalog, settings, cert_chain, tmp_path,
                                                  monkeypatch, capsys) -> None:
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    monkeypatch.setenv("ASSET_PIPELINE_C2PA_CERT", str(cert_chain["cert"]))
    monkeypatch.setenv("ASSET_PIPELINE_C2PA_KEY", str(cert_chain["key"]))
    assert main(["get", FOREST, "-o", str(tmp_path / "forest.png")]) == 0
    out = capsys.readouterr().out
    assert "signed C2PA manifest (Valid)" in out and "trainedAlgorithmicMedia" in out
    assert read_credentials(tmp_path / "forest.png", "png").summary["generation"]["asset_id"] == FOREST


# --- lineage, models, recall ------------------------------------------------------------------
def test_lineage_and_produced_by(ingested: Catalog) -> None:
    icon = ingested.lineage(ICON)
    assert icon["models"] == ["flux1-schnell"] and icon["adapters"] == ["flat-icons"]
    assert icon["versions"][0]["inputs"] == [{"ref": "images/sunset.png", "matches": [{"asset_id": SUNSET,
                                                                                       "version": 1}]}]
    assert ingested.lineage(SUNSET)["derived"] == [{"asset_id": ICON, "version": 1, "via": "images/sunset.png"}]
    hero = ingested.lineage(HERO)
    assert [v["version"] for v in hero["versions"]] == [1, 2] and hero["adapters"] == ["rocket-style"]
    made = ingested.produced_by("sd_xl_base_1.0")
    assert {m["asset_id"] for m in made} == {FOREST, PORTRAIT} and {m["role"] for m in made} == {"model"}
    assert [(m["asset_id"], m["role"]) for m in ingested.produced_by("flat-icons")] == [(ICON, "adapter")]
    assert ingested.produced_by("sd_xl_base_1.0", since="2026-11-01T09:02:00") == [made[0]]
    assert made[0]["asset_id"] == PORTRAIT and ingested.produced_by("no-such-model") == []


def test_models_asset_counts_and_bytes(ingested: Catalog, settings) -> None:
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("provenance_job").execute_in_process(instance=instance)
    assert result.success
    rows = {(r["name"], r["kind"]): r for r in ingested.sql("select * from models").to_pylist()}
    sdxl = rows[("sd_xl_base_1.0", "model")]
    sizes = ingested.sql("select sum(size_bytes) n from asset_versions where model = 'sd_xl_base_1.0'")
    assert (sdxl["assets"], sdxl["versions"], sdxl["bytes"]) == (2, 2, sizes.to_pylist()[0]["n"])
    turbo = rows[("sdxl-turbo-1.0", "model")]
    assert turbo["versions"] == 6 and turbo["assets"] == 5  # sunset x3 (one blob), hero v1+v2, city
    assert rows[("rocket-style", "adapter")]["assets"] == 1
    meta = materialization_metadata(result)["storage_attribution"]
    assert meta["stored_bytes"] == sum(ingested.home.store.size(s) for s in ingested.home.store.iter_hashes())


def test_recall_dry_run_then_take_down_then_undo(ingested: Catalog) -> None:
    before = {r["id"]: r["status"] for r in ingested.sql("select id, status from assets").to_pylist()}
    dry = ingested.recall(model="sd_xl_base_1.0", reason="licence revoked", by="legal", dry_run=True)
    assert sorted(dry.asset_ids) == sorted([FOREST, PORTRAIT])
    assert {r["id"]: r["status"] for r in ingested.sql("select id, status from assets").to_pylist()} == before
    ingested.archive(PORTRAIT)  # archived outputs are recalled too (their bytes come back hot)
    done = ingested.recall(model="sd_xl_base_1.0", reason="licence revoked", by="legal")
    assert sorted(done.asset_ids) == sorted([FOREST, PORTRAIT]) and not done.dry_run
    assert {ingested.asset(i)["status"] for i in (FOREST, PORTRAIT)} == {"deleted"}
    audit = ingested.sql("select asset_id, policy, \"by\", dry_run from lifecycle_actions where action = 'delete' "
                         "order by dry_run, asset_id").to_pylist()
    assert {(a["policy"], a["by"], a["dry_run"]) for a in audit} == {("recall:sd_xl_base_1.0", "legal", False),
                                                                    ("recall:sd_xl_base_1.0", "legal", True)}
    recalls = ingested.sql("select recall_id, reason, dry_run, assets from recalls order by requested_at").to_pylist()
    assert [(r["reason"], r["dry_run"], r["assets"]) for r in recalls] == [("licence revoked", True, 2),
                                                                          ("licence revoked", False, 2)]
    from asset_pipeline import NoEmbeddings

    with pytest.raises(NoEmbeddings):  # this home has no embeddings: search says so (issue 11), not []
        ingested.search(query="forest", k=50)
    assert sorted(ingested.undo_recall(done.recall_id)) == sorted([FOREST, PORTRAIT])
    assert ingested.get(PORTRAIT).read()  # back, bytes hot
    from asset_pipeline.provenance.recall import RecallError

    with pytest.raises(RecallError, match="'reason'"):
        ingested.recall(model="sd_xl_base_1.0", reason=" ")


def test_recall_through_dagster_and_cli_then_hard_delete(ingested: Catalog, settings, tmp_path, monkeypatch,
                                                         capsys) -> None:
    from asset_pipeline.lifecycle.actions import sweep

    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert main(["recall", "--model", "flat-icons", "--reason", "takedown notice", "--dry-run"]) == 0
    assert "would take 1 assets" in capsys.readouterr().out and ingested.asset(ICON)["status"] == "active"
    assert main(["recall", "--model", "flat-icons", "--reason", "takedown notice", "--by", "ops"]) == 0
    out = capsys.readouterr().out
    assert "took 1 assets" in out and ICON in out and ingested.asset(ICON)["status"] == "deleted"
    sha = ingested.asset(ICON)["current_sha256"]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).date().isoformat()
    lifecycle = ingested.lifecycle()
    lifecycle.blob_grace = dt.timedelta(0)  # collect unneeded blobs in the same sweep
    s = sweep(lifecycle, (), 1, later, "test")  # grace period over: hard delete
    assert s.hard_deleted == 1 and not ingested.home.store.exists(sha)
    from asset_pipeline.lifecycle.actions import LifecycleError

    with pytest.raises(LifecycleError, match="hard-deleted"):
        ingested.undelete(ICON)


# --- perceptual hash ------------------------------------------------------------------------
def test_phash_tells_near_duplicates_from_different_images() -> None:
    base = render_image(11, (512, 384))
    small = io.BytesIO()
    Image.open(io.BytesIO(base)).resize((256, 192)).save(small, "JPEG", quality=70)
    other = render_image(12, (512, 384))
    assert phash(base) == phash(base)
    assert hamming(phash(base), phash(small.getvalue())) <= 4
    assert hamming(phash(base), phash(other)) > 16


@pytest.mark.parametrize(("seed", "expected"), [(1, -8192704384876369478), (2, -8164901027246943185),
                                                (3, -8202916687532164822)])
def test_phash_values_stay_comparable_with_hashes_stored_before(seed: int, expected: int) -> None:
    """Stored hashes are compared with new ones: the value of a given image never changes (these
    were computed by the first release's bit-string implementation)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((48, 64, 3)) * 255).astype("uint8")
    pixels[:, :20] //= 3
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "PNG")
    assert phash(data.getvalue()) == expected


def test_banded_hamming_join_finds_exactly_the_brute_force_pairs() -> None:
    import duckdb

    rng = np.random.default_rng(5)
    base = rng.integers(-(2**63), 2**63 - 1, size=300, dtype=np.int64)
    flips = [(int(b) & (2**64 - 1)) ^ (1 << int(i)) ^ (1 << int(j))  # two bits flipped (or none: i == j)
             for b, i, j in zip(base[:100], rng.integers(0, 64, 100), rng.integers(0, 64, 100))]
    hashes = [int(h) for h in base] + [f - (1 << 64) if f >= 1 << 63 else f for f in flips]
    con = duckdb.connect()
    con.execute("create table hashes (id integer, phash bigint)")
    con.executemany("insert into hashes values (?, ?)", list(enumerate(hashes)))
    for d in (0, 3, 6):
        got = {(a, b) for a, b, _ in con.execute(pairs_sql(d)).fetchall()}
        want = {(i, j) for i in range(len(hashes)) for j in range(i + 1, len(hashes))
                if hamming(hashes[i], hashes[j]) <= d}
        assert got == want and (d < 2 or len(want) >= 100)


def test_similar_images_and_the_near_duplicate_prefilter(ingested: Catalog, monkeypatch) -> None:
    from asset_pipeline.embeddings.job import embed_pending
    from asset_pipeline.embeddings.model import TINY_TEST, load_model, parse_model
    from asset_pipeline.embeddings.near_duplicates import prefiltered_pairs
    from asset_pipeline.embeddings.vectors import VectorStore

    pairs = ingested.similar_images(max_distance=0)
    assert {frozenset((p["asset_a"], p["asset_b"])) for p in pairs} >= {frozenset((SUNSET, MARKETING))}
    model = load_model(parse_model(TINY_TEST))
    vectors = VectorStore(ingested.home.settings.lancedb_dir)
    embed_pending(ingested.tables, ingested.home.store, vectors, model, num_workers=0)
    table = vectors.open(model.model_id)
    confirmed = prefiltered_pairs(table, model.model_id, pairs, 0.999)
    assert {frozenset((p["asset_a"], p["asset_b"])) for p in confirmed} == \
        {frozenset((p["asset_a"], p["asset_b"])) for p in pairs}  # identical bytes: cosine 1
    assert prefiltered_pairs(table, model.model_id, [{"asset_a": SUNSET, "version_a": 1, "asset_b": ICON,
                                                      "version_b": 1}], 0.999) == []


# --- schema upgrade, storage attribution ---------------------------------------------------------
def test_a_home_made_before_the_provenance_columns_keeps_working(settings) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from asset_pipeline.samples import make_samples
    from asset_pipeline.tables import ADDED_COLUMNS, SCHEMAS, Tables

    tables = Tables(settings.tables_dir)
    old = pa.schema([f for f in SCHEMAS["asset_versions"] if f.name not in ADDED_COLUMNS["asset_versions"]])
    write_deltalake(tables.uri("asset_versions"), old.empty_table(), mode="append")
    make_samples(settings.inbox)
    first = Catalog(settings=settings).ingest(only=["images/sunset.png"])
    assert first.new_versions == 1  # the write added the columns
    cat = Catalog(settings=settings)
    cat.ingest()
    assert cat.sql("select count(*) n from asset_versions where phash is not null").to_pylist()[0]["n"] == 9


def test_a_home_with_old_files_reads_the_new_columns_as_null(settings) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    from asset_pipeline.tables import ADDED_COLUMNS, SCHEMAS, Tables

    tables = Tables(settings.tables_dir)
    old = pa.schema([f for f in SCHEMAS["asset_versions"] if f.name not in ADDED_COLUMNS["asset_versions"]])
    row = {f.name: None for f in old} | {"asset_id": "a_old", "version": 1, "sha256": "0" * 64, "tags": []}
    write_deltalake(tables.uri("asset_versions"), pa.Table.from_pylist([row], schema=old), mode="append")
    assert tables.add_missing_columns("asset_versions") == list(ADDED_COLUMNS["asset_versions"])
    got = tables.read("asset_versions").to_pylist()
    assert got[0]["asset_id"] == "a_old" and got[0]["phash"] is None and got[0]["adapters"] is None
    assert Catalog(settings=settings).sql("select phash, c2pa_state from asset_versions").to_pylist() == [
        {"phash": None, "c2pa_state": None}]


def test_storage_is_split_fairly_among_assets_sharing_a_blob(ingested: Catalog) -> None:
    stored = sum(ingested.home.store.size(s) for s in ingested.home.store.iter_hashes())
    by_project = {r["project"]: r for r in ingested.storage("project")}
    sunset = ingested.asset(SUNSET)["size_bytes"]  # one blob: research/sunset, research/sunset-copy, marketing
    assert by_project["marketing"]["attributed_bytes"] == round(sunset / 3)
    assert by_project["marketing"]["exclusive_bytes"] == 0
    assert by_project["research"]["shared_bytes"] == round(2 * sunset / 3)
    assert abs(sum(r["attributed_bytes"] for r in by_project.values()) - stored) <= 1
    by_creator = {r["created_by"]: r for r in ingested.storage("created_by")}
    assert by_creator["bob"]["attributed_bytes"] == round(sunset / 3)
    assert abs(sum(r["attributed_bytes"] for r in by_creator.values()) - stored) <= 1


# --- keep the last N versions ---------------------------------------------------------------------
@pytest.mark.parametrize("select, action, message", [
    ({"keep_last_versions": 2}, "delete", "go together"),
    ({"project": "research"}, "prune_versions", "go together"),
    ({"keep_last_versions": 0}, "prune_versions", "keep_last_versions must be a whole number ≥ 1"),
    ({"keep_last_versions": "2"}, "prune_versions", "keep_last_versions must be a whole number ≥ 1"),
])
def test_keep_last_versions_policy_is_validated(select, action, message) -> None:
    from asset_pipeline.lifecycle.policies import PolicyError, parse_config

    with pytest.raises(PolicyError, match=f"policy 'k'.*{message}"):
        parse_config({"policies": [{"name": "k", "action": action, "select": select}]})


def test_keep_last_versions_releases_old_bytes_after_the_grace_period(ingested: Catalog) -> None:
    from asset_pipeline import AssetUnavailable
    from asset_pipeline.lifecycle.actions import blob_report, sweep
    from asset_pipeline.lifecycle.policies import parse_config

    ingested.create_version(HERO, render_image(60, (400, 300)), "third take")
    first_take = ingested.get(HERO, version=1).read()
    old_shas = [v["sha256"] for v in ingested.list_versions(HERO)[:2]]
    old_bytes = sum(v["size_bytes"] for v in ingested.list_versions(HERO)[:2])
    doc = {"grace_period_days": 1, "preview_new_policies": False, "policies": [  # acts at once (issue 10's preview)
        {"name": "keep-1", "action": "prune_versions", "select": {"keep_last_versions": 1, "project": "research"}}]}
    config = parse_config(doc)
    today = dt.datetime.now(dt.UTC).date()

    def run(day, dry_run=False):
        lifecycle = ingested.lifecycle()
        lifecycle.blob_grace = dt.timedelta(0)  # collect unneeded blobs in the same sweep
        return sweep(lifecycle, config.policies, config.grace_period_days, day.isoformat(), "t", dry_run,
                     config.guard_rails)

    assert run(today, dry_run=True).audit_rows == 2 and all(ingested.home.store.exists(s) for s in old_shas)
    first = run(today)
    assert first.audit_rows == 2 and first.versions_purged == 0  # marked; grace period running
    assert ingested.get(HERO, version=1).read()
    assert run(today).audit_rows == 0  # a re-run marks nothing twice
    later = run(today + dt.timedelta(days=2))
    assert later.versions_purged == 2 and later.bytes_freed == old_bytes
    audit = ingested.sql("select sum(bytes) n from lifecycle_actions where action = 'version_purged'").to_pylist()
    assert audit == [{"n": old_bytes}]
    assert not any(ingested.home.store.exists(s) for s in old_shas)
    assert ingested.get(HERO).read() and ingested.get(HERO).version == 3
    with pytest.raises(AssetUnavailable, match="v1 was pruned by retention policy 'keep-1'"):
        ingested.get(HERO, version=1).read()
    assert [v["version"] for v in ingested.list_versions(HERO)] == [1, 2, 3]  # history stays
    assert blob_report(ingested.lifecycle()) == {"orphans": [], "missing": []}
    assert ingested.get(SUNSET).read()  # single-version assets untouched
    # The content of a pruned version submitted again is a new version (it was not "unchanged":
    # its bytes are gone), and its bytes stay through later sweeps.
    again = ingested.create_version(HERO, first_take, "the first take, back")
    assert again["version"] == 4 and again["sha256"] == old_shas[0]
    run(today + dt.timedelta(days=4))
    assert ingested.get(HERO).read() and ingested.get(HERO).version == 4
    assert ingested.home.store.exists(old_shas[0]) and blob_report(ingested.lifecycle()) == {"orphans": [],
                                                                                             "missing": []}
