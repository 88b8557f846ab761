{#-
  One row per topic seen: in the staged tickets or, for categories agents introduced in
  production feedback (a new kind of request), only in the training set.
  n_tickets counts every staged ticket with the topic (duplicates included); n_labelled counts
  the ones the classifier learns from (training_set: deduplicated, non-empty text, feedback
  labels included) and share is the topic's fraction of training_set - the class balance.

  The staged side reads no staged rows in bulk: daily_ticket_volumes already counts every staged
  ticket per day and topic (its tests hold it to that), so the totals come from its few thousand
  rows, and first/last seen are two lookups per topic in stg_tickets' (topic, event_at) index.

  The labelled side counts training_set's rows by where they come from: its staged rows are exactly
  the staged tickets of `labelled_predicate` (the model takes every one of them), counted on
  stg_tickets' partial index of that predicate, and its feedback rows (`feedback_row`, few) are
  counted in training_set. Counting training_set itself read about as many entries but
  fetched more rows from the heap every day: each run moves a day of rows from 'test' to 'train'
  all over the table, and those pages lose their visibility-map bit until a vacuum (1M tickets,
  back-to-back daily runs: 0.7 s on the first day, 1.2-1.9 s by the fifth), where stg_tickets
  only gains the day's new rows. First/last seen come from training_set only for topics no staged
  ticket has, i.e. feedback rows alone.
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
    select topic, sum(n_labelled)::bigint as n_labelled, min(first_seen) as first_seen, max(last_seen) as last_seen
    from (
        select topic, count(*) as n_labelled, null::timestamptz as first_seen, null::timestamptz as last_seen
        from {{ ref('stg_tickets') }}
        where {{ labelled_predicate() }}
        group by topic
        union all
        select topic, count(*), min(event_at), max(event_at)
        from {{ ref('training_set') }}
        where {{ feedback_row() }}
        group by topic
    ) as by_origin
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
