"""Ticket sources: the synthetic generator (with drift scenarios), CSV import with quarantine, and the
idempotent upsert into ``raw.tickets``. Plain Python: the CLI and the Dagster ingest assets call
``store.ingest_synthetic`` / ``store.ingest_csv``.
"""
