"""Names every layer agrees on: the registry aliases and the tables the asset graph is keyed by."""

# Registered-model aliases: training registers a ``challenger``; the promotion gate moves ``champion``,
# which the API serves and the drift report compares against.
CHAMPION = "champion"
CHALLENGER = "challenger"

# dbt's training mart. Dagster keys mirror Postgres schema.table (ticket_assets/defs/keys.py).
TRAINING_SET_TABLE = "marts.training_set"

# The embedding store (ticket_assets.ml.embedding_store) and its backfill partitions: bucket k holds
# the training-set texts whose md5(text_hash) starts with the hex digit k (ml.embedding_backfill).
EMBEDDINGS_TABLE = "features.ticket_embeddings"
EMBEDDING_PARTITION_KEYS: tuple[str, ...] = tuple(f"{i:x}" for i in range(16))

# Loads of raw.ingest_loads a reader may take: ids are assigned at insert and can commit out of
# order, so only loads older than every transaction still running (a lower id can no longer appear).
SETTLED_LOADS = "loaded_xid < pg_snapshot_xmin(pg_current_snapshot())"
