"""Alembic environment: always run through :func:`ticket_assets.services.migrations.migrate`,
which hands over an open connection (holding the migration advisory lock)."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
