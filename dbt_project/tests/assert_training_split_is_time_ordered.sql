-- Among the tickets split by time every test ticket is at least as recent as every train ticket.
select max_train.event_at as newest_train, min_test.event_at as oldest_test
from (
    select max(event_at) as event_at from {{ ref('training_set') }}
    where split = 'train' and split_rule = 'time'
) as max_train
cross join (
    select min(event_at) as event_at from {{ ref('training_set') }}
    where split = 'test' and split_rule = 'time'
) as min_test
where max_train.event_at > min_test.event_at
