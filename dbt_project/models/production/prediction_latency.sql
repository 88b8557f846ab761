{#- Server-side latency percentiles per UTC day x endpoint x model version. -#}
select
    date_trunc('day', created_at)::date as day,
    endpoint,
    model_version,
    count(*) as n_predictions,
    percentile_cont(0.50) within group (order by latency_ms) as p50_ms,
    percentile_cont(0.95) within group (order by latency_ms) as p95_ms,
    percentile_cont(0.99) within group (order by latency_ms) as p99_ms,
    max(latency_ms) as max_ms
from {{ source('ops', 'predictions') }}
group by 1, 2, 3
