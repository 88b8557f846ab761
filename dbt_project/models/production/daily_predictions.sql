{#- Predictions served per UTC day x endpoint x topic x urgency x answer mode x model version. -#}
select
    date_trunc('day', created_at)::date as day,
    endpoint,
    topic,
    urgency,
    coalesce(answer_mode, 'none') as answer_mode,
    model_version,
    count(*) as n_predictions,
    avg(topic_confidence) as mean_topic_confidence,
    avg(case when low_confidence then 1.0 else 0.0 end) as low_confidence_share,
    -- Trust signals as served (ops.predictions since revision 0010); older rows are null and left out.
    avg(case when needs_review then 1.0 when not needs_review then 0.0 end) as needs_review_share,
    avg(case when out_of_scope then 1.0 when not out_of_scope then 0.0 end) as out_of_scope_share,
    avg(case when escalated then 1.0 when not escalated then 0.0 end) as escalated_share
from {{ source('ops', 'predictions') }}
group by 1, 2, 3, 4, 5, 6
