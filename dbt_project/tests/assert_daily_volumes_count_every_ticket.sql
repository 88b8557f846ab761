-- Incremental day rebuilds must neither lose nor double-count tickets.
select volumes.total, staged.total
from (select coalesce(sum(n_tickets), 0) as total from {{ ref('daily_ticket_volumes') }}) as volumes
cross join (select count(*) as total from {{ ref('stg_tickets') }}) as staged
where volumes.total <> staged.total
