"""Embeddings area: sentence vectors for every training-set ticket, computed once per text hash."""

import time

import dagster as dg
import polars as pl

from ticket_assets.defs.k8s import HEAVY_STEP_TAGS
from ticket_assets.defs.keys import TRAINING_SET
from ticket_assets.defs.resources import PlatformSettingsResource, PostgresResource
from ticket_assets.ml.embed import get_embedder
from ticket_assets.ml.embedding_store import embed_missing

OWNERS = ["team:ml-platform"]


def progress_logger(context: dg.AssetExecutionContext, label: str, every_s: float = 5.0):
    """Progress in the run log without flooding it: at most one line every few seconds."""
    last = [0.0]

    def report(done: int, total: int, what: str | None = None) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_s:
            last[0] = now
            step = f" · {what}" if what else ""
            context.log.info(f"{label}: {done}/{total} ({done / max(total, 1):.0%}){step}")

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
    )
    with postgres.connect() as conn:
        stored = conn.execute(
            "select count(*) from features.ticket_embeddings where model_id = %s", (embedder.model_id,)
        ).fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            "embedding_model": embedder.model_id,
            "candidates": report.candidates,
            "encoded": report.encoded,
            "already_embedded": report.skipped,
            "stored_vectors": int(stored),
            "encode_seconds": dg.MetadataValue.float(round(report.seconds, 2)),
            "tickets_per_second": dg.MetadataValue.float(round(report.per_second, 1)),
            "threads": settings.embed_threads,
        }
    )
