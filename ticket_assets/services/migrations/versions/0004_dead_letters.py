"""Fault-proof logging: rows the database refused (a data error) are kept with the error.

The prediction log writer bisects a failed batch and moves only the refused rows here, so one bad
row never blocks the others; `row_json` is the row as JSON text with control characters escaped.
"""

from alembic import op

revision = "0004_dead_letters"
down_revision = "0003_csv_sources"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("predictions_rejected", "feedback_rejected"):
        op.execute(
            f"""
            create table if not exists ops.{table} (
                id           bigserial   primary key,
                request_id   uuid        not null,
                rejected_at  timestamptz not null default now(),
                error        text        not null,
                row_json     text        not null
            )
            """
        )


def downgrade() -> None:
    op.execute("drop table if exists ops.predictions_rejected")
    op.execute("drop table if exists ops.feedback_rejected")
