"""Embeddings area: sentence vectors for every training-set ticket, computed once per text hash."""

import time
from typing import TYPE_CHECKING

import dagster as dg

from ticket_assets.core.names import EMBEDDING_PARTITION_KEYS
from ticket_assets.defs.k8s import HEAVY_STEP_TAGS
from ticket_assets.defs.keys import TICKET_EMBEDDINGS_BACKFILL, TRAINING_SET
from ticket_assets.defs.resources import PlatformSettingsResource, PostgresResource

if TYPE_CHECKING:
    from ticket_assets.ml.embedding_store import EmbedReport

OWNERS = ["team:ml-platform"]


def progress_logger(context: dg.AssetExecutionContext, label: str, every_s: float = 5.0):
    """Progress in the run log without flooding it: at most one line every few seconds, with the
    rate so far and the time left at that rate."""
    started = time.monotonic()
    last = [0.0]

    def report(done: int, total: int, what: str | None = None) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_s:
            last[0] = now
            rate = done / max(now - started, 1e-9)
            pace = f"{rate:.0f}/s" if rate >= 1 else f"{1 / rate:.0f} s each" if rate > 0 else "starting"
            left = f", {(total - done) / rate:.0f}s left" if 0 < done < total else ""
            step = f" · {what}" if what else ""
            context.log.info(f"{label}: {done}/{total} ({done / max(total, 1):.0%}, {pace}{left}){step}")

    return report


@dg.asset(
    key="ticket_embeddings",
    deps=[TRAINING_SET],
    group_name="embeddings",
    kinds={"onnx", "postgres"},
    owners=OWNERS,
    op_tags=HEAVY_STEP_TAGS,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "all-MiniLM-L6-v2 vectors (384-d) for every ticket of `marts.training_set`, stored in "
        "`features.ticket_embeddings` keyed by (text hash, embedding model). Incremental: a text already "
        "embedded is never encoded again."
    ),
)
def ticket_embeddings(
    context: dg.AssetExecutionContext, postgres: PostgresResource, platform: PlatformSettingsResource
) -> dg.MaterializeResult:
    import polars as pl

    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.embedding_store import embed_missing

    settings = platform.get()
    with postgres.connect() as conn:
        rows = conn.execute("select distinct text_hash, text from marts.training_set").fetchall()
    candidates = pl.DataFrame(rows, schema={"text_hash": pl.Utf8, "text": pl.Utf8}, orient="row")
    embedder = get_embedder(settings)
    report = embed_missing(
        postgres.url(),
        embedder,
        candidates,
        batch_size=settings.embed_batch_size,
        progress=progress_logger(context, "encoding"),
        log=context.log,
        chunk_size=settings.embed_write_chunk,
    )
    return dg.MaterializeResult(
        metadata=_embed_metadata(postgres, embedder.model_id, report, settings.embed_threads)
    )


def _embed_metadata(
    postgres: PostgresResource, model_id: str, report: "EmbedReport", threads: int
) -> dict[str, object]:
    from ticket_assets.ml.embedding_store import stored_count

    with postgres.connect() as conn:
        stored = stored_count(conn, model_id)
    return {
        "embedding_model": model_id,
        "candidates": report.candidates,
        "encoded": report.encoded,
        "already_embedded": report.skipped,
        "stored_vectors": int(stored),
        "encode_seconds": dg.MetadataValue.float(round(report.seconds, 2)),
        "tickets_per_second": dg.MetadataValue.float(round(report.per_second, 1)),
        "threads": threads,
    }


EMBEDDING_PARTITIONS = dg.StaticPartitionsDefinition(list(EMBEDDING_PARTITION_KEYS))


@dg.asset(
    key=TICKET_EMBEDDINGS_BACKFILL,
    deps=[TRAINING_SET],
    partitions_def=EMBEDDING_PARTITIONS,
    # One run per partition: runs spread over processes (local run launcher) or pods (K8sRunLauncher,
    # one heavy step pod each under the k8s executor), and a failed partition retries alone.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    group_name="embeddings",
    kinds={"onnx", "postgres"},
    owners=OWNERS,
    op_tags=HEAVY_STEP_TAGS,
    description=(
        "The embedding store filled in 16 hash buckets of `marts.training_set` (`md5(text_hash)`'s first "
        "hex digit), for a large first load or a new embedding model: partitions run in parallel "
        "(`ticketops backfill embeddings --processes N`, or a Dagster backfill), write into "
        "`features.ticket_embeddings` like `ticket_embeddings` does, and never encode a stored text, so "
        "a killed partition resumes from its last committed chunk. `ticket_embeddings` then finds every "
        "vector stored and only adds new tickets."
    ),
)
def ticket_embeddings_backfill(
    context: dg.AssetExecutionContext, postgres: PostgresResource, platform: PlatformSettingsResource
) -> dg.MaterializeResult:
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.embedding_backfill import partition_candidates
    from ticket_assets.ml.embedding_store import embed_missing

    settings = platform.get()
    partition = context.partition_key
    with postgres.connect() as conn:
        candidates = partition_candidates(conn, partition)
    embedder = get_embedder(settings)
    report = embed_missing(
        postgres.url(),
        embedder,
        candidates,
        batch_size=settings.embed_batch_size,
        progress=progress_logger(context, f"partition {partition}"),
        log=context.log,
        chunk_size=settings.embed_write_chunk,
    )
    metadata = _embed_metadata(postgres, embedder.model_id, report, settings.embed_threads)
    return dg.MaterializeResult(metadata={"partition": partition, **metadata})
