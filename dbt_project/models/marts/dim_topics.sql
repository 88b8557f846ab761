{#-
  One row per topic seen: in the staged tickets or, for categories agents introduced in
  production feedback (a new kind of request), only in the training set.
  n_tickets counts every staged ticket with the topic (duplicates included); n_labelled counts
  the ones the classifier learns from (training_set: deduplicated, non-empty text, feedback
  labels included) and share is the topic's fraction of training_set - the class balance.

  The staged side reads no staged rows in bulk: daily_ticket_volumes already counts every staged
  ticket per day and topic (its tests hold it to that), so the totals come from its few thousand
  rows, and first/last seen are two lookups per topic in stg_tickets' (topic, event_at) index.
  The labelled side counts training_set through its own (topic, event_at) index.
-#}
{{ config(indexes=[{'columns': ['topic'], 'unique': True}]) }}

with staged_counts as (
    select topic, sum(n_tickets)::bigint as n_tickets
    from {{ ref('daily_ticket_volumes') }}
    where topic is not null
    group by topic
),

staged as (
    select
        counts.topic,
        counts.n_tickets,
        (select min(s.event_at) from {{ ref('stg_tickets') }} as s where s.topic = counts.topic) as first_seen,
        (select max(s.event_at) from {{ ref('stg_tickets') }} as s where s.topic = counts.topic) as last_seen
    from staged_counts as counts
),

labelled as (
    select topic, count(*) as n_labelled, min(event_at) as first_seen, max(event_at) as last_seen
    from {{ ref('training_set') }}
    group by topic
)

select
    coalesce(staged.topic, labelled.topic) as topic,
    coalesce(staged.n_tickets, 0) as n_tickets,
    coalesce(labelled.n_labelled, 0) as n_labelled,
    coalesce(staged.first_seen, labelled.first_seen) as first_seen,
    coalesce(staged.last_seen, labelled.last_seen) as last_seen,
    round(coalesce(labelled.n_labelled, 0)::numeric / nullif(sum(labelled.n_labelled) over (), 0), 6)::float
        as share
from staged
full outer join labelled on labelled.topic = staged.topic
