"""Machine learning without Dagster: embeddings, training, evaluation, gate, registry, prediction."""
