"""Routing targets: label columns besides topic and urgency (assignment group, queue, service...).

``raw.tickets.labels`` holds a source's extra labels as a JSON object (target name -> label as the
source spelled it); ``ops.feedback.true_labels`` the agents' corrections of those targets.
"""

from alembic import op

revision = "0006_routing_labels"
down_revision = "0005_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("alter table raw.tickets add column if not exists labels jsonb not null default '{}'::jsonb")
    op.execute("alter table ops.feedback add column if not exists true_labels jsonb")


def downgrade() -> None:
    op.execute("alter table ops.feedback drop column if exists true_labels")
    op.execute("alter table raw.tickets drop column if exists labels")
