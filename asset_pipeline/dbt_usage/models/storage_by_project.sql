-- Bytes per project and type: logical (every version), stored (each distinct blob once within
-- the project), and what deduplication saved.
with versions as (
    select a.project, v.type, v.asset_id, v.sha256, v.size_bytes
    from {{ source('pipeline', 'asset_versions') }} v
    join {{ source('pipeline', 'assets') }} a on a.id = v.asset_id
    where a.status <> 'deleted'
),
blobs as (
    select distinct project, type, sha256, size_bytes from versions
)
select
    v.project,
    v.type,
    v.project || ':' || v.type as project_type,
    count(distinct v.asset_id) as assets,
    count(*) as versions,
    sum(v.size_bytes) as logical_bytes,
    (select sum(b.size_bytes) from blobs b where b.project = v.project and b.type = v.type) as stored_bytes,
    sum(v.size_bytes) - (select sum(b.size_bytes) from blobs b where b.project = v.project and b.type = v.type)
        as bytes_saved_by_dedup
from versions v
group by v.project, v.type
