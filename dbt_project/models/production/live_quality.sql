{#-
  Live quality per model version where agents sent feedback: accuracy, macro-F1 (over the true
  classes present) and recall of the most urgent level, for topic and urgency.
  Per-class F1 = 2·TP / (2·TP + FP + FN).
-#}
with labelled as (
    select
        p.model_version,
        p.topic as predicted_topic,
        coalesce({{ normalise_label('f.true_topic') }}, p.topic) as true_topic,
        p.urgency as predicted_urgency,
        coalesce({{ urgency_level(normalise_label('f.true_urgency')) }}, p.urgency) as true_urgency
    from {{ source('ops', 'feedback') }} as f
    join {{ source('ops', 'predictions') }} as p using (request_id)
    where f.true_topic is not null or f.true_urgency is not null
),

topic_classes as (
    select model_version, true_topic as class from labelled group by 1, 2
),

topic_f1 as (
    select
        c.model_version,
        c.class,
        count(*) filter (where l.true_topic = c.class and l.predicted_topic = c.class) as tp,
        count(*) filter (where l.true_topic <> c.class and l.predicted_topic = c.class) as fp,
        count(*) filter (where l.true_topic = c.class and l.predicted_topic <> c.class) as fn
    from topic_classes as c
    join labelled as l using (model_version)
    group by 1, 2
),

urgency_classes as (
    select model_version, true_urgency as class from labelled where true_urgency is not null group by 1, 2
),

urgency_f1 as (
    select
        c.model_version,
        c.class,
        count(*) filter (where l.true_urgency = c.class and l.predicted_urgency = c.class) as tp,
        count(*) filter (where l.true_urgency is distinct from c.class and l.predicted_urgency = c.class) as fp,
        count(*) filter (where l.true_urgency = c.class and l.predicted_urgency is distinct from c.class) as fn
    from urgency_classes as c
    join labelled as l using (model_version)
    group by 1, 2
),

per_version as (
    select
        model_version,
        count(*) as n_feedback,
        avg(case when predicted_topic = true_topic then 1.0 else 0.0 end) as topic_accuracy,
        avg(case when predicted_urgency = true_urgency then 1.0 else 0.0 end)
            filter (where true_urgency is not null) as urgency_accuracy,
        count(*) filter (where true_urgency = 'critical') as n_critical,
        avg(case when predicted_urgency = 'critical' then 1.0 else 0.0 end)
            filter (where true_urgency = 'critical') as critical_recall
    from labelled
    group by 1
)

select
    v.model_version,
    v.n_feedback,
    v.topic_accuracy,
    (select avg(2.0 * tp / nullif(2 * tp + fp + fn, 0)) from topic_f1 as t where t.model_version = v.model_version)
        as topic_macro_f1,
    v.urgency_accuracy,
    (select avg(2.0 * tp / nullif(2 * tp + fp + fn, 0)) from urgency_f1 as u where u.model_version = v.model_version)
        as urgency_macro_f1,
    v.n_critical,
    v.critical_recall
from per_version as v
