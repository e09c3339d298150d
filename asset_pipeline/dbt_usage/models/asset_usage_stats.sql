-- Per asset, all events up to the end of the last day built. The pipeline copies
-- download_count and last_accessed into the `assets` table from here.
select
    asset_id,
    count(*) filter (where action = 'view') as views,
    count(*) filter (where action = 'download') as downloads,
    count(*) filter (where action = 'embed') as embeds,
    count(*) filter (where action = 'transform') as transforms,
    count(*) as events,
    count(distinct user_id) as distinct_users,
    min("at") as first_used,
    max("at") as last_accessed
from {{ source('pipeline', 'usage_events') }}
where day <= cast('{{ var("day_to") }}' as date)
group by asset_id
