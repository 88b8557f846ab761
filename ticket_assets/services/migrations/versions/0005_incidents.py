"""Ticket memory: major incidents and the incident a prediction belongs to.

Written by the major_incidents asset (bursts of mutually similar tickets well above their baseline
rate); the incident sensor alerts once per row (cursor on seq).
"""

from alembic import op

revision = "0005_incidents"
down_revision = "0004_dead_letters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table if not exists ops.incidents (
            incident_id          text primary key,
            seq                  bigserial,
            detected_at          timestamptz      not null default now(),
            updated_at           timestamptz      not null default now(),
            first_seen           timestamptz      not null,
            last_seen            timestamptz      not null,
            size                 integer          not null,
            baseline_per_window  double precision not null,
            top_terms            text[]           not null,
            summary              jsonb            not null,  -- examples, departments, channels
            centroid             bytea            not null,  -- float32 unit vector of model_id
            model_id             text             not null,
            run_id               text                        -- the Dagster run that detected it
        )
        """
    )
    op.execute("create index if not exists incidents_seq_idx on ops.incidents (seq)")
    op.execute("alter table ops.predictions add column if not exists incident_id text")


def downgrade() -> None:
    op.execute("alter table ops.predictions drop column if exists incident_id")
    op.execute("drop table if exists ops.incidents")
