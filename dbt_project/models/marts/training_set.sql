{#-
  One row per labelled, deduplicated ticket with its train/test split: source tickets plus
  tickets labelled by agents' feedback in production (stg_feedback_labels).

  Split (`split_rule` says which one a row took):
  - 'time': tickets with a real created_at - the most recent `test_fraction` of them (by
    event_at, ties broken by ticket_id) are 'test' - so evaluation measures how the model does
    on tickets newer than anything it trained on.
  - 'hash': tickets without a created_at (imported datasets without dates, whose event_at is
    only the load time), and every ticket when the dates are degenerate (one created_at value
    holds more than `degenerate_time_share` of the dated tickets: an export that stamped every
    row with its export time). Within each topic, rows ordered by md5(ticket_id) - the first
    round(n * test_fraction) are 'test' - a deterministic split stratified by label: the holdout
    has the training data's label mix, and a topic with two examples keeps both for training.
    ticket_assets.ml.splits.stratified_hash_split is the same rule in Python (a test keeps them
    in step). Feedback labels take the hash split too (see feedback_labels below).

  Incremental (delete+insert on ticket_id), yet equal to a full rebuild:
  - rows are rewritten for every hash group that holds a staged ticket updated since this
    table's newest updated_at (the groups stg_tickets re-ranked), plus the groups a changed
    ticket left (its old text_hash is still here), plus every dated row when the time rule
    switched on or off; the post-hook deletes rows of those groups that are no longer
    canonical, labelled tickets;
  - feedback rows are few and depend on every ticket text, so they are all recomputed;
  - the time boundary is a global quantile, so new tickets move earlier ones from 'test' to
    'train': the post-hook finds the new boundary and flips only the rows on the wrong side
    of it, through partial indexes on each split (the rows between the old and new boundary);
    rewritten rows take their split from the old boundary, so new tickets are written as 'test'
    once instead of as 'train' and then updated;
  - the hash split is a per-topic quantile: a post-hook re-ranks the topics that changed.
  A table rebuild wrote every wide row (7 s per million tickets); this writes the changed ones.
  Every index here serves a hook or a reader (each is one more entry for every row written or
  moved across the boundary): per-topic counts read stg_tickets' indexes, not these.
  A training_set built as a table before lacks updated_at: on_schema_change adds it (null), so
  the first incremental run sees every staged ticket as changed and rewrites every row.
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
            {'columns': ['updated_at']},
        ],
        pre_hook="{{ training_set_collect_changes() }}",
        post_hook=[
            "{{ ensure_contract_constraints() }}",
            "{{ training_set_split_indexes() }}",
            "{{ training_set_drop_stale_rows() }}",
            "{{ training_set_move_time_boundary() }}",
            "{{ training_set_stratify_hash_split() }}",
            "{{ autovacuum_follows_loads(this) }}",
            after_commit("{{ vacuum_if_never_vacuumed(this) }}"),
        ],
    )
}}

{%- set test_fraction = var('test_fraction') | float %}
{#- The pre-hook evaluated the time rule once for this build. -#}
{%- set dated = 'labelled.created_at is not null and (select usable from training_set_rule)' %}

with


ticket_labels as not materialized (
    select ticket_id, text, title, body, topic, topic_display, urgency, channel, department, language,
           created_at, event_at, text_hash, updated_at, labels
    from {{ ref('stg_tickets') }}
    where {{ labelled_predicate() }}
),

-- Agents' corrections from production; a text already labelled at the source keeps that label
-- and one copy per text survives (the latest correction). Feedback is the newest data and often
-- the only data of a new regime (a new topic): under the time split all of it would be held out
-- and a retrained model would never learn from it. So it takes the hash split (created_at left
-- null here; event_at keeps its time): a fifth of it is held out, the rest is trained on.
feedback_labels as (
    select distinct on (fb.text)
        fb.ticket_id, fb.text, null::text as title, fb.text as body, fb.topic, fb.topic_display,
        fb.urgency, fb.channel,
        null::text as department, null::text as language, null::timestamptz as created_at, fb.event_at,
        fb.text_hash,
        fb.updated_at,
        fb.labels
    from {{ ref('stg_feedback_labels') }} as fb
    where fb.topic is not null
        and not exists (select 1 from ticket_labels as t where t.text = fb.text)
    order by fb.text, fb.updated_at desc
),

labelled as not materialized (
    select * from ticket_labels
    {% if is_incremental() %}
    where text_hash in (select text_hash from training_set_affected_hashes)
    {% endif %}
    union all
    select * from feedback_labels
    where not exists (select 1 from ticket_labels as t where t.text_hash = feedback_labels.text_hash)
),

{% if is_incremental() %}
-- Provisional for dated rows: the current boundary (the oldest test row, first in the test split's
-- index). New tickets, newer than it, start in 'test', so the post-hook moves only the rows the
-- new boundary passes.
test_boundary as (
    select event_at, ticket_id
    from {{ this }}
    where split_rule = 'time' and split = 'test'
    order by event_at, ticket_id
    limit 1
)
{% else %}
n_test_dated as (
    select round(count(*) * {{ test_fraction }})::bigint as n
    from labelled
    where {{ dated }}
),

-- The oldest dated ticket that is still in the test split (no row when the split is empty).
test_boundary as (
    select event_at, ticket_id
    from labelled
    where {{ dated }}
    order by event_at desc, ticket_id desc
    offset greatest((select n from n_test_dated) - 1, 0)
    limit least((select n from n_test_dated), 1)
)
{% endif %}

select
    labelled.ticket_id,
    labelled.text,
    labelled.title,
    labelled.body,
    labelled.topic,
    labelled.topic_display,
    labelled.urgency,
    labelled.channel,
    labelled.department,
    labelled.language,
    labelled.created_at,
    labelled.event_at,
    labelled.text_hash,
    char_length(labelled.text) as text_length,
    case
        when {{ dated }}
            then case
                when (labelled.event_at, labelled.ticket_id) >= (test_boundary.event_at, test_boundary.ticket_id)
                    then 'test'
                else 'train'
            end
        -- Provisional: training_set_stratify_hash_split ranks the hash rows within each topic.
        when {{ hash_bucket('labelled.ticket_id') }} < {{ (test_fraction * 10000) | round | int }} then 'test'
        else 'train'
    end as split,
    case when {{ dated }} then 'time' else 'hash' end as split_rule,
    -- Newest change behind the row: the incremental watermark, and what tests_since filters on.
    labelled.updated_at,
    -- Routing targets: {target: label key}; ticket_assets.ml.dataset turns each into a column.
    labelled.labels
from labelled
left join test_boundary on true
