-- One row per day x topic x urgency x channel; GROUP BY treats nulls as equal, unlike unique tests.
select day, topic, urgency, channel, count(*) as n_rows
from {{ ref('daily_ticket_volumes') }}
group by day, topic, urgency, channel
having count(*) > 1
