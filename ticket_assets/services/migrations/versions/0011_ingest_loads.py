"""A log of every load into ``raw.tickets``, written in the load's own transaction.

Dagster learns about loads from here (the ``raw_ticket_loads`` sensor reports each one as a
``raw/tickets`` materialisation), so whoever writes tickets - the CLI on any machine, a scheduled
job, another service - needs neither Dagster nor access to its instance, and a load that committed
is never missing from the lineage.
"""

from alembic import op

revision = "0011_ingest_loads"
down_revision = "0010_prediction_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table if not exists raw.ingest_loads (
            load_id      bigserial   primary key,
            loaded_at    timestamptz not null default now(),
            source       text        not null,  -- synthetic, outage-burst, csv:<source name>
            rows_read    integer     not null,
            inserted     integer     not null,
            updated      integer     not null,
            unchanged    integer     not null,
            quarantined  integer     not null,
            -- Quarantine reasons and, for CSV imports, encoding, delimiter and repaired rows.
            details      jsonb       not null default '{}'::jsonb,
            -- The writing transaction: ids are taken at insert and may commit out of order, so a
            -- reader takes only loads older than every transaction still running.
            loaded_xid   xid8        not null default pg_current_xact_id()
        )
        """
    )


def downgrade() -> None:
    op.execute("drop table if exists raw.ingest_loads")
