"""Index feedback by update time: the new-labels sensor counts labels newer than its cursor."""

from alembic import op

revision = "0002_feedback_updated_at_index"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("create index if not exists feedback_updated_at_idx on ops.feedback (updated_at)")


def downgrade() -> None:
    op.execute("drop index if exists ops.feedback_updated_at_idx")
