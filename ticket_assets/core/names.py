"""Names every layer agrees on: the registry aliases and the tables the asset graph is keyed by."""

# Registered-model aliases: training registers a ``challenger``; the promotion gate moves ``champion``,
# which the API serves and the drift report compares against.
CHAMPION = "champion"
CHALLENGER = "challenger"

# dbt's training mart. Dagster keys mirror Postgres schema.table (ticket_assets/defs/keys.py).
TRAINING_SET_TABLE = "marts.training_set"
