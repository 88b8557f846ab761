"""CSV import sources: which file each `csv:<name>` source was last imported from.

Sources are named after the file's resolved path (name@hash); this table lets a re-import of a file
loaded before that rule keep its old `csv:<file name>` source and ticket ids (sources/store.py).
"""

from alembic import op

revision = "0003_csv_sources"
down_revision = "0002_feedback_updated_at_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table if not exists raw.csv_sources (
            source            text        primary key,     -- e.g. 'csv:export.csv@1a2b3c4d'
            resolved_path     text        not null,
            first_imported_at timestamptz not null default now(),
            last_imported_at  timestamptz not null default now()
        )
        """
    )


def downgrade() -> None:
    op.execute("drop table if exists raw.csv_sources")
