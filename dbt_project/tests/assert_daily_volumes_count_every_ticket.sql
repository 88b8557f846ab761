-- A check on daily_ticket_volumes in Dagster (it reads stg_tickets too, so dagster-dbt needs the ref).
{{ config(meta={'dagster': {'ref': {'name': 'daily_ticket_volumes'}}}) }}
-- Incremental day rebuilds must neither lose nor double-count tickets.
{% set tests_since = tests_since() %}
{% if tests_since %}
-- Checked on the days of the tickets staged since `tests_since` (a ticket that moved day is
-- staged again, so its new day is checked; its old day is rebuilt by the model's day check).
with days as (
    select distinct (event_at at time zone 'UTC')::date as day
    from {{ ref('stg_tickets') }}
    where updated_at > '{{ tests_since }}'::timestamptz
)
select days.day, volumes.total, staged.total
from days
cross join lateral (
    select coalesce(sum(n_tickets), 0) as total from {{ ref('daily_ticket_volumes') }} as v where v.day = days.day
) as volumes
cross join lateral (
    select count(*) as total from {{ ref('stg_tickets') }} as s
    where s.event_at >= days.day::timestamp at time zone 'UTC'
        and s.event_at < (days.day + 1)::timestamp at time zone 'UTC'
) as staged
where volumes.total <> staged.total
{% else %}
select volumes.total, staged.total
from (select coalesce(sum(n_tickets), 0) as total from {{ ref('daily_ticket_volumes') }}) as volumes
cross join (select count(*) as total from {{ ref('stg_tickets') }}) as staged
where volumes.total <> staged.total
{% endif %}
