{#-
  Tickets per UTC day x topic x urgency x channel (null = not known), counting every staged
  ticket, duplicates included: a repeated text is still a ticket someone sent.

  Incremental: each run rebuilds whole days (delete+insert on `day`):
  - days holding tickets staged since the newest ticket this table has counted,
  - days whose count no longer matches staging (a ticket's created_at was corrected and it
    moved to another day),
  - the last `volume_lookback_days` days the table holds.
  A day left without any ticket gets a zero row so delete+insert clears it; the post-hook then
  drops zero rows. The check against staging is one aggregate over stg_tickets (about a second
  per million tickets) and keeps the table equal to a full rebuild. Only a ticket that was
  updated after it was first loaded (updated_at > ingested_at: the upsert moves updated_at, never
  ingested_at) can have left a day, so a run that stages only new tickets skips the check and
  reads only the recent days through the event_at index.
-#}
{{
    config(
        materialized='incremental',
        unique_key='day',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['day']}],
        post_hook=["{{ ensure_contract_constraints() }}", "delete from {{ this }} where n_tickets = 0"],
    )
}}

with staged as not materialized (
    select
        (event_at at time zone 'UTC')::date as day,
        topic,
        urgency,
        channel,
        event_at,
        updated_at
    from {{ ref('stg_tickets') }}
),

{% if is_incremental() %}
{%- set watermark = scalar_query(
    "select coalesce(max(max_updated_at)::text, '-infinity') from " ~ this
) %}
{%- set any_ticket_updated = scalar_query(
    "select exists (select 1 from " ~ ref('stg_tickets') ~ " where updated_at > '" ~ watermark
    ~ "'::timestamptz and updated_at > ingested_at)"
) %}
{%- set rebuild_from = scalar_query(
    "select least((select min((event_at at time zone 'UTC')::date) from " ~ ref('stg_tickets')
    ~ " where updated_at > '" ~ watermark ~ "'::timestamptz), (select max(day) - "
    ~ (var('volume_lookback_days') | int) ~ " from " ~ this ~ "))::text"
) %}
staged_per_day as (
    select day, count(*) as n_tickets, max(updated_at) as max_updated_at
    from staged
    {%- if not any_ticket_updated %}
    -- Only new tickets: their days are rebuilt, no other day's count can have changed.
    where updated_at > '{{ watermark }}'::timestamptz
    {%- endif %}
    group by day
),

counted_per_day as (
    select day, sum(n_tickets) as n_tickets, max(max_updated_at) as max_updated_at
    from {{ this }}
    group by day
),

days_to_rebuild as (
    select staged_per_day.day
    from staged_per_day
    where staged_per_day.max_updated_at > (
        select coalesce(max(max_updated_at), '-infinity'::timestamptz) from counted_per_day
    )
    {%- if any_ticket_updated %}
    union
    select coalesce(staged_per_day.day, counted_per_day.day)
    from staged_per_day
    full outer join counted_per_day on counted_per_day.day = staged_per_day.day
    where staged_per_day.n_tickets is distinct from counted_per_day.n_tickets
    {%- endif %}
    union
    select generate_series(
        max(day) - {{ var('volume_lookback_days') | int }}, max(day), interval '1 day'
    )::date
    from counted_per_day
    having max(day) is not null
),
{% endif %}

volumes as (
    select
        day,
        topic,
        urgency,
        channel,
        count(*) as n_tickets,
        max(updated_at) as max_updated_at
    from staged
    {% if is_incremental() %}
    where day in (select day from days_to_rebuild)
    {%- if not any_ticket_updated and rebuild_from %}
        -- A literal bound the planner can use on the event_at index (recent days only).
        and event_at >= '{{ rebuild_from }}'::date::timestamp at time zone 'UTC'
    {%- endif %}
    {% endif %}
    group by day, topic, urgency, channel
)

select * from volumes
{% if is_incremental() %}
union all
select day, null, null, null, 0, null
from days_to_rebuild
where day not in (select day from staged_per_day)
{% endif %}
