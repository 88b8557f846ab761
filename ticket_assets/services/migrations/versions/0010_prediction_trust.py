"""Trust signals in the prediction log, so monitoring and the review queue read what was served.

``needs_review``, ``out_of_scope`` and ``escalated`` are columns (the review queue orders by the
first, monitoring counts all three); the per-target tiers, the escalation rule, the out-of-scope
score and the routing predictions ride along. Rows logged before this revision keep nulls.
"""

from alembic import op

revision = "0010_prediction_trust"
down_revision = "0008_kb_gaps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        alter table ops.predictions
            add column if not exists needs_review       boolean,
            add column if not exists out_of_scope       boolean,
            add column if not exists out_of_scope_score double precision,
            add column if not exists escalated          boolean,
            add column if not exists escalation_rule    text,
            add column if not exists served_urgency     text,
            add column if not exists topic_tier         text,
            add column if not exists urgency_tier       text,
            add column if not exists routing            jsonb
        """
    )
    # The review queue: the recent rows a person has to decide.
    op.execute(
        "create index if not exists predictions_needs_review_idx on ops.predictions (created_at) "
        "where needs_review"
    )


def downgrade() -> None:
    op.execute("drop index if exists ops.predictions_needs_review_idx")
    op.execute(
        """
        alter table ops.predictions
            drop column if exists routing,
            drop column if exists urgency_tier,
            drop column if exists topic_tier,
            drop column if exists served_urgency,
            drop column if exists escalation_rule,
            drop column if exists escalated,
            drop column if exists out_of_scope_score,
            drop column if exists out_of_scope,
            drop column if exists needs_review
        """
    )
