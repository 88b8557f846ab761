{#- Topic-confidence histogram (tenths) per UTC day x model version: a shrinking top bucket is an
    early sign the traffic no longer looks like the training data. -#}
select
    date_trunc('day', created_at)::date as day,
    model_version,
    least(floor(topic_confidence * 10), 9)::int as confidence_decile,
    count(*) as n_predictions
from {{ source('ops', 'predictions') }}
group by 1, 2, 3
