"""On-call notices: each dedup key alerts once (unique), and an alert carries a link (run, report)."""

from alembic import op

revision = "0007_alert_dedup"
down_revision = "0006_routing_labels"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table ops.alerts add column if not exists url text")
    # Earlier duplicates keep their history but give up the key, so the unique index can hold.
    op.execute(
        """
        update ops.alerts a set dedup_key = null
        from ops.alerts b
        where a.dedup_key = b.dedup_key and a.id > b.id
        """
    )
    op.execute(
        "create unique index if not exists alerts_dedup_key_uq on ops.alerts (dedup_key) "
        "where dedup_key is not null"
    )


def downgrade() -> None:
    op.execute("drop index if exists ops.alerts_dedup_key_uq")
    op.execute("alter table ops.alerts drop column if exists url")
