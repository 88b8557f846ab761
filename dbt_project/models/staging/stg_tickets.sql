{#-
  One row per raw ticket: cleaned text, normalised labels, and an exact-duplicate flag.

  Duplicates (same text_hash) are flagged, not dropped: the earliest ticket of a hash group
  (by event_at, then ticket_id) is canonical, the others get is_duplicate = true and
  duplicate_of = the canonical ticket_id. Marts filter on the flag. Dropping rows here could not
  stay correct incrementally: a ticket that arrives later but carries an earlier created_at
  must demote a row that is already staged, and delete+insert on ticket_id only replaces rows.

  Incremental runs pick the raw rows updated since the newest staged updated_at and re-rank
  every hash group they touch as a whole: the groups they join and, for tickets whose text
  changed, the groups they leave. raw.tickets is upsert-only (no deletes), so that is enough.
  Only the rows that change are written: the updated tickets and the group members whose
  canonical ticket moved (a synthetic load re-ranked as many unchanged rows as it added).
  The watermark assumes ingestion commits before dbt runs (the asset graph orders them); the
  `staging_lookback` var widens it when loads can commit out of order.

  Speed (1M tickets): parallel workers shipping wide rows through Gather Merge were slower than
  one process, so they are off; `vacuum (analyze)` after a full build gives the marts and the
  next incremental run fresh statistics (an incremental run's 1 % of new rows barely moves them,
  and autovacuum re-analyzes after 10 % changed); raw.tickets is analyzed first when its
  statistics are missing or stale, or the planner takes the new rows for a third of the table
  and hashes all of it (4 s instead of 0.5 s at 1M); ticket_id/text_hash use byte order ("C") so tie-breaks are
  the same on every server locale and sorts/indexes skip locale-aware comparison; joins back
  to raw.tickets compare in raw's collation, or its text_hash index cannot serve them. The
  (topic, event_at) index gives dim_topics each topic's first and last ticket in two lookups.
-#}
{{
    config(
        materialized='incremental',
        unique_key='ticket_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        indexes=[
            {'columns': ['ticket_id'], 'unique': True},
            {'columns': ['text_hash']},
            {'columns': ['event_at']},
            {'columns': ['updated_at']},
            {'columns': ['topic', 'event_at']},
        ],
        pre_hook=[
            "set local max_parallel_workers_per_gather = 0",
            "{{ analyze_if_stale(source('raw', 'tickets')) }}",
        ],
        post_hook=[
            "{{ ensure_contract_constraints() }}",
            "{{ stg_tickets_partial_indexes() }}",
            "{{ autovacuum_follows_loads(this) }}",
            after_commit("{{ vacuum_if_never_vacuumed(this) }}"),
        ],
    )
}}

with

{% if is_incremental() %}
{%- set watermark = scalar_query(
    "select coalesce((max(updated_at) - interval '" ~ var('staging_lookback') ~ "')::text, '-infinity') from " ~ this
) %}
changed as (
    select ticket_id, text_hash
    from {{ source('raw', 'tickets') }}
    where updated_at > '{{ watermark }}'::timestamptz
),

affected_hashes as (
    select text_hash from changed
    union
    -- Back to raw's collation: under staging's "C" the lookup below could not use raw's index.
    select staged.text_hash collate "default"
    from {{ this }} as staged
    inner join changed on changed.ticket_id = staged.ticket_id
),

tickets as (
    select raw_tickets.*
    from {{ source('raw', 'tickets') }} as raw_tickets
    where raw_tickets.text_hash in (select text_hash from affected_hashes)
),
{% else %}
tickets as (
    select * from {{ source('raw', 'tickets') }}
),
{% endif %}

cleaned as (
    select
        ticket_id collate "C" as ticket_id,
        source,
        {{ clean_text('title') }} as title,
        coalesce({{ clean_text('body') }}, '') as body,
        {{ normalise_label('topic') }} as topic,
        -- The export's own spelling, what people see (ticket_assets.core.labels.display_label).
        nullif(regexp_replace(btrim(topic), '[[:space:]]+', ' ', 'g'), '') as topic_display,
        {{ normalise_label('urgency') }} as urgency_label,
        nullif(btrim(urgency), '') as urgency_raw,
        {{ normalise_label('channel') }} as channel,
        {{ normalise_label('department') }} as department,
        {{ normalise_label('language') }} as language,
        created_at,
        coalesce(created_at, ingested_at) as event_at,
        ingested_at,
        updated_at,
        text_hash collate "C" as text_hash,
        -- Routing targets (assignment group, queue...): {target: label key}, as imported.
        coalesce(labels, '{}'::jsonb) as labels
    from tickets
),

ranked as (
    select
        *,
        first_value(ticket_id) over (
            partition by text_hash order by event_at, ticket_id
        ) as canonical_ticket_id
    from cleaned
)

select
    ticket_id,
    source,
    title,
    body,
    -- The model input; serving builds it the same way: "<title>. <body>", or the body alone.
    concat_ws('. ', title, nullif(body, '')) as text,
    topic,
    topic_display,
    {{ urgency_level('urgency_label') }} as urgency,
    urgency_raw,
    channel,
    department,
    language,
    created_at,
    event_at,
    ingested_at,
    updated_at,
    text_hash,
    labels,
    canonical_ticket_id <> ticket_id as is_duplicate,
    nullif(canonical_ticket_id, ticket_id) as duplicate_of
from ranked
{% if is_incremental() %}
-- Of the re-ranked groups, only rows that change are rewritten: the changed tickets and those
-- whose canonical ticket moved (every other column comes from the unchanged raw row).
where ranked.ticket_id in (select ticket_id from changed)
    or not exists (
        select 1 from {{ this }} as staged
        where staged.ticket_id = ranked.ticket_id
            and staged.duplicate_of is not distinct from nullif(ranked.canonical_ticket_id, ranked.ticket_id)
    )
{% endif %}
