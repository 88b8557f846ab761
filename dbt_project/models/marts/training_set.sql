{#-
  One row per labelled, deduplicated ticket with its train/test split: source tickets plus
  tickets labelled by agents' feedback in production (stg_feedback_labels).

  Split: tickets with a created_at are split by time - the most recent `test_fraction` of them
  (by event_at, ties broken by ticket_id) are 'test' - so evaluation measures how the model does
  on tickets newer than anything it trained on. Tickets without a created_at (imported datasets
  without dates, whose event_at is only the load time) get a deterministic split from
  md5(ticket_id) instead, so they keep the same split across rebuilds and machines.

  A table, not incremental: the time boundary is a global quantile, so new tickets move earlier
  ones from 'test' to 'train'. The boundary comes from a narrow (event_at, ticket_id) sort, so
  the wide rows are written in one pass without being sorted.
-#}
{{
    config(
        indexes=[{'columns': ['ticket_id'], 'unique': True}],
        post_hook="analyze {{ this }}",
    )
}}

{%- set test_fraction = var('test_fraction') | float %}

with ticket_labels as (
    select ticket_id, text, title, body, topic, urgency, channel, department, language,
           created_at, event_at, text_hash
    from {{ ref('stg_tickets') }}
    where not is_duplicate
        and topic is not null
        and text <> ''
),

-- Agents' corrections from production; a text already labelled at the source keeps that label
-- and one copy per text survives (the latest correction).
feedback_labels as (
    select distinct on (fb.text)
        fb.ticket_id, fb.text, null::text as title, fb.text as body, fb.topic, fb.urgency, fb.channel,
        null::text as department, null::text as language, fb.created_at, fb.event_at, fb.text_hash
    from {{ ref('stg_feedback_labels') }} as fb
    where fb.topic is not null
        and not exists (select 1 from ticket_labels as t where t.text = fb.text)
    order by fb.text, fb.updated_at desc
),

labelled as not materialized (
    select * from ticket_labels
    union all
    select * from feedback_labels
    where not exists (select 1 from ticket_labels as t where t.text_hash = feedback_labels.text_hash)
),

n_test_dated as (
    select round(count(*) * {{ test_fraction }})::bigint as n
    from labelled
    where created_at is not null
),

-- The oldest dated ticket that is still in the test split (no row when the split is empty).
test_boundary as (
    select event_at, ticket_id
    from labelled
    where created_at is not null
    order by event_at desc, ticket_id desc
    offset greatest((select n from n_test_dated) - 1, 0)
    limit least((select n from n_test_dated), 1)
)

select
    labelled.ticket_id,
    labelled.text,
    labelled.title,
    labelled.body,
    labelled.topic,
    labelled.urgency,
    labelled.channel,
    labelled.department,
    labelled.language,
    labelled.created_at,
    labelled.event_at,
    labelled.text_hash,
    char_length(labelled.text) as text_length,
    case
        when labelled.created_at is not null
            then case
                when (labelled.event_at, labelled.ticket_id) >= (test_boundary.event_at, test_boundary.ticket_id)
                    then 'test'
                else 'train'
            end
        when {{ hash_bucket('labelled.ticket_id') }} < {{ (test_fraction * 10000) | round | int }} then 'test'
        else 'train'
    end as split
from labelled
left join test_boundary on true
