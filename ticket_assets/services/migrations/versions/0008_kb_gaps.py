"""Ticket memory: the knowledge-base gaps of the latest kb_gaps run, for the API and the console.

Replaced as a whole by each run (the run's id on every row); ``incident_ids`` links a gap to the
major incidents whose tickets it holds (an outage is not an article to write).
"""

from alembic import op

revision = "0008_kb_gaps"
down_revision = "0007_alert_dedup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table if not exists ops.kb_gaps (
            rank              integer          primary key,  -- 1 = the largest shortfall
            run_id            text,                          -- the Dagster run that found it
            computed_at       timestamptz      not null default now(),
            size              integer          not null,
            trend             double precision not null,     -- share in the later half of the period
            mean_kb_score     double precision not null,
            shortfall         double precision not null,
            title_terms       text[]           not null,
            examples          jsonb            not null,     -- [{id, kb_score, text}]
            unhelpful_drafts  integer          not null,
            incident_ids      text[]           not null default '{}'
        )
        """
    )


def downgrade() -> None:
    op.execute("drop table if exists ops.kb_gaps")
