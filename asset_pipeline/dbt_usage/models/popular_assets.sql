-- For each day built: the most downloaded assets over the window ending that day.
{{ config(materialized='incremental', unique_key='day', incremental_strategy='delete+insert') }}

with days as (
    select cast(d as date) as day
    from generate_series(cast('{{ var("day_from") }}' as date), cast('{{ var("day_to") }}' as date),
                         interval 1 day) as t(d)
),
counts as (
    select
        days.day,
        e.asset_id,
        count(*) filter (where e.action = 'download') as downloads,
        count(*) as events,
        count(distinct e.user_id) as distinct_users
    from days
    join {{ source('pipeline', 'usage_events') }} e
      on e.day between days.day - {{ var("popular_window_days") - 1 }} and days.day
    group by days.day, e.asset_id
)
select
    day,
    cast(day as varchar) || ':' || asset_id as day_asset,
    asset_id,
    downloads,
    events,
    distinct_users,
    row_number() over (partition by day order by downloads desc, events desc, asset_id) as rank
from counts
qualify rank <= {{ var("popular_top_n") }}
