"""Who pays for the bytes: stored bytes per project or per creator, with shared blobs split fairly.

The rule: every stored blob (one sha256, stored once) is split equally among the distinct assets
that reference it in any version; an asset's share of a blob goes to the asset's project, and to
the creator of the newest version of that asset that references the blob. Hard-deleted assets
no longer hold a share. So the attributed bytes of all projects (or all creators) add up to the
bytes actually stored, instead of counting a deduplicated blob once per owner.

`logical_bytes` is what each group would store without deduplication (every version counted),
`exclusive_bytes` what only its assets reference (freed if the group's assets went away), and
`shared_bytes` its part of blobs it shares with other groups' assets.
"""

from __future__ import annotations

from typing import Any

from asset_pipeline.sql import connect
from asset_pipeline.tables import Tables

GROUPS = {"project": "a.project", "created_by": "r.created_by"}


def attributed_bytes(tables: Tables, by: str = "project") -> list[dict[str, Any]]:
    """One row per project (``by="project"``) or creator (``by="created_by"``), largest first."""
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}, got {by!r}")
    con = connect(tables, ["assets", "asset_versions", "lifecycle_actions"])
    try:
        return con.sql(f"""
            with purged as (select distinct asset_id from lifecycle_actions
                            where action = 'hard_delete' and not dry_run),
            refs as (  -- one row per (asset, blob): the newest version of the asset that holds the blob
                select v.asset_id, v.sha256, any_value(v.size_bytes) size, arg_max(v.created_by, v.version) created_by,
                       sum(v.size_bytes) logical
                from asset_versions v where v.asset_id not in (select asset_id from purged) group by all),
            shares as (select *, count(*) over (partition by sha256) holders from refs),
            grouped as (select {GROUPS[by]} grp, r.* from shares r join assets a on a.id = r.asset_id),
            owners as (select sha256, count(distinct grp) n_groups from grouped group by 1)
            select grp as {by}, count(distinct asset_id) assets, sum(logical)::bigint logical_bytes,
                   round(sum(size / holders))::bigint attributed_bytes,
                   round(sum(case when o.n_groups = 1 then size / holders else 0 end))::bigint exclusive_bytes,
                   round(sum(case when o.n_groups > 1 then size / holders else 0 end))::bigint shared_bytes
            from grouped join owners o using (sha256)
            group by grp order by attributed_bytes desc, grp""").to_arrow_table().to_pylist()
    finally:
        con.close()
