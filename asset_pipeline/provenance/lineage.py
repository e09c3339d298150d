"""Generation lineage: which model and adapters (LoRAs) made each version, what it was made from
(an init image that is itself an asset), and what was made from it.

Models are first-class rows: every version names its model (`model`) and adapters (`adapters`,
from LoRA tags, ComfyUI loaders or a sidecar's ``parameters.loras``); the `models` table counts
assets, versions and bytes per model and per adapter. Inputs are references as the generator gave
them — an asset id, a sha256, or a file name — resolved against the catalog when asked.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from asset_pipeline.provenance.embedded import strip_weight_ext
from asset_pipeline.sql import connect
from asset_pipeline.tables import Tables

ADAPTER_KEYS = ("loras", "lora", "adapters", "lycoris")
INPUT_KEYS = ("init_image", "init_images", "input_image", "input_images", "source_image", "control_image", "inputs")
_SHA = re.compile(r"[0-9a-f]{64}")
_ASSET = re.compile(r"a_[0-9a-f]{24}")


def _names(value: Any, key: str = "name") -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [value[key]] if isinstance(value.get(key), str) else [k for k in value if isinstance(k, str)]
    if isinstance(value, list):
        return [n for v in value for n in _names(v, key)]
    return []


def adapters_of(parameters: dict[str, Any]) -> list[str]:
    """LoRA/adapter names in generation parameters, without weight-file extensions, sorted."""
    names = [strip_weight_ext(n) for k in ADAPTER_KEYS for n in _names(parameters.get(k))]
    return sorted({n for n in names if n})


def inputs_of(parameters: dict[str, Any], extra: dict[str, Any]) -> list[str]:
    """References to what a generation started from (init image, control image, inputs)."""
    refs = [n for k in INPUT_KEYS for n in _names(parameters.get(k), "asset_id")]
    refs += [n for n in _names(extra.get("inputs"), "asset_id")]
    return list(dict.fromkeys(r.strip() for r in refs if r.strip()))


def produced_by(tables: Tables, model: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """Assets with at least one version made by `model` (as the model or an adapter), newest
    first; each with the matching versions and the role the model played."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        rows = con.execute("""
            select a.id asset_id, a.name, a.project, a.status, a.current_version,
                   list(v.version order by v.version) versions,
                   bool_or(v.model = $m) as_model, bool_or(list_contains(v.adapters, $m)) as_adapter,
                   sum(v.size_bytes) bytes, max(v.created_at) last_created
            from asset_versions v join assets a on a.id = v.asset_id
            where (v.model = $m or list_contains(v.adapters, $m)) and ($since is null or v.created_at >= $since)
            group by all order by last_created desc, a.id""", {"m": model, "since": since}).fetchall()
        cols = [d[0] for d in con.description]
    finally:
        con.close()
    out = []
    for row in rows:
        r = dict(zip(cols, row))
        r["role"] = "model" if r.pop("as_model") else "adapter"
        r.pop("as_adapter")
        out.append(r)
    return out


def resolve_inputs(con: Any, refs: list[str]) -> list[dict[str, Any]]:
    """Each reference with the asset versions it names (none when it matches nothing)."""
    out = []
    for ref in refs:
        if _ASSET.fullmatch(ref):
            hits = con.execute("select asset_id, max(version) from asset_versions where asset_id = ? group by 1",
                               [ref]).fetchall()
        elif _SHA.fullmatch(ref):
            hits = con.execute("select asset_id, version from asset_versions where sha256 = ? order by 1, 2",
                               [ref]).fetchall()
        else:  # a file the generator loaded: versions ingested from that path (or a file of that name)
            path = ref.replace("\\", "/").removeprefix("./")
            hits = con.execute("""select asset_id, version from asset_versions
                                  where source_path = ? or ends_with(source_path, ?) order by 1, 2""",
                               [path, "/" + path]).fetchall()
        out.append({"ref": ref, "matches": [{"asset_id": a, "version": v} for a, v in hits]})
    return out


def lineage(tables: Tables, asset_id: str) -> dict[str, Any]:
    """Model, adapters and resolved inputs of every version of `asset_id`, and the versions of
    other assets that name one of its versions (by id, content hash or source file) as input."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        asset = con.execute("select id, name, project, status, current_version from assets where id = ?",
                            [asset_id]).fetchall()
        if not asset:
            from asset_pipeline.errors import AssetNotFound

            raise AssetNotFound(f"no asset with id {asset_id!r}")
        versions = con.execute("""select version, sha256, model, adapters, inputs, created_at, created_by,
                                         change_description, source_path
                                  from asset_versions where asset_id = ? order by version""", [asset_id]).fetchall()
        cols = [d[0] for d in con.description]
        rows = [dict(zip(cols, v)) for v in versions]
        for row in rows:
            row["inputs"] = resolve_inputs(con, list(row["inputs"] or []))
        shas = [r["sha256"] for r in rows]
        paths = [r["source_path"] for r in rows if r["source_path"]]
        derived = con.execute("""
            select asset_id, version, input_ref from
                (select asset_id, version, unnest(inputs) as input_ref from asset_versions)
            where asset_id <> $id and (input_ref = $id or input_ref in (select unnest($shas)) or exists (
                select 1 from (select unnest($paths) as path) p
                where p.path = input_ref or ends_with(p.path, '/' || input_ref)))
            order by asset_id, version""", {"id": asset_id, "shas": shas, "paths": paths}).fetchall()
    finally:
        con.close()
    _, name, project, status, current = asset[0]
    return {
        "asset_id": asset_id, "name": name, "project": project, "status": status, "current_version": current,
        "models": sorted({r["model"] for r in rows if r["model"]}),
        "adapters": sorted({a for r in rows for a in (r["adapters"] or [])}),
        "versions": rows,
        "derived": [{"asset_id": a, "version": v, "via": ref} for a, v, ref in derived],
    }


def model_rows(tables: Tables, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per model and per adapter: assets (all, and not deleted), versions, and the bytes
    of the distinct blobs they produced."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        result = con.sql("""
            with uses as (
                select asset_id, version, sha256, size_bytes, created_at, model as name, 'model' as kind
                from asset_versions where model is not null
                union all
                select asset_id, version, sha256, size_bytes, created_at, unnest(adapters) as name, 'adapter' as kind
                from asset_versions where len(adapters) > 0),
            blobs as (select name, kind, sum(size) as bytes from
                      (select name, kind, sha256, any_value(size_bytes) as size from uses group by all) group by all)
            select u.name, u.kind, count(distinct u.asset_id) assets,
                   count(distinct u.asset_id) filter (where a.status <> 'deleted') live_assets,
                   count(*) versions, any_value(b.bytes)::bigint bytes, min(u.created_at) first_seen,
                   max(u.created_at) last_seen
            from uses u join assets a on a.id = u.asset_id join blobs b on b.name = u.name and b.kind = u.kind
            group by u.name, u.kind order by bytes desc, u.name""").to_arrow_table().to_pylist()
    finally:
        con.close()
    now = now or datetime.now(UTC)
    return [{**r, "computed_at": now} for r in result]
