{#-
  Agents' corrections turned into labelled tickets, so feedback becomes training data.

  One row per served ticket that received a label in ops.feedback. A correction of one target
  keeps the served prediction for the other (the agent saw it and let it stand). Redacted
  predictions (no text) cannot be learned from and are left out. The text is the exact model
  input the API logged (title + body cleaned like stg_tickets), hashed the same way dbt-side.
-#}
{{ config(materialized='view') }}

select
    'feedback:' || p.request_id::text as ticket_id,
    p.text,
    coalesce({{ normalise_label('f.true_topic') }}, p.topic) as topic,
    -- The agent's spelling when they corrected the topic, else the served key.
    coalesce(nullif(regexp_replace(btrim(f.true_topic), '[[:space:]]+', ' ', 'g'), ''), p.topic) as topic_display,
    coalesce({{ urgency_level(normalise_label('f.true_urgency')) }}, p.urgency) as urgency,
    {{ normalise_label('p.channel') }} as channel,
    p.created_at,
    p.created_at as event_at,
    encode(sha256(convert_to(p.text, 'UTF8')), 'hex') as text_hash,
    greatest(f.updated_at, p.created_at) as updated_at,
    -- Corrections of routing targets ({target: label key}, validated by the API).
    coalesce(f.true_labels, '{}'::jsonb) as labels
from {{ source('ops', 'feedback') }} as f
join {{ source('ops', 'predictions') }} as p using (request_id)
where p.text is not null
    and btrim(p.text) <> ''
    and (f.true_topic is not null or f.true_urgency is not null or coalesce(f.true_labels, '{}'::jsonb) <> '{}'::jsonb)
