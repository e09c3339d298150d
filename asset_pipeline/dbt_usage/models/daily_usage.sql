-- Per day and action: events, distinct assets, distinct users. Incremental: a run replaces
-- exactly the days it builds.
{{ config(materialized='incremental', unique_key='day', incremental_strategy='delete+insert') }}

select
    day,
    action,
    cast(day as varchar) || ':' || action as day_action,
    count(*) as events,
    count(distinct asset_id) as distinct_assets,
    count(distinct user_id) as distinct_users
from {{ source('pipeline', 'usage_events') }}
{% if is_incremental() %}
where day between cast('{{ var("day_from") }}' as date) and cast('{{ var("day_to") }}' as date)
{% endif %}
group by day, action
