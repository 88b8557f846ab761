"""``ticketops backfill embeddings``: the embedding backfill's partitions in parallel local processes.

Each worker process runs partitions of ``ticket_embeddings_backfill`` one after another as Dagster
runs on the persistent instance (the UI shows every partition's run, logs and metadata), loading the
model once. The workers share the machine's embedding threads (``embed_threads // processes`` each,
at least one), because more threads than cores collapses ONNX Runtime's throughput. Progress is
read from the store itself, so it counts what every worker has committed. On Kubernetes the same
partitions are a Dagster backfill instead: one run pod (and step pod) per partition.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field

from ticket_assets.ml.embed import model_id_for
from ticket_assets.ml.embedding_backfill import (
    EMBEDDING_PARTITION_KEYS,
    BackfillStatus,
    backfill_status,
    check_partition_keys,
)
from ticket_assets.ml.embedding_store import stored_count
from ticket_assets.services.postgres import connect, database_url
from ticket_assets.settings import Settings


@dataclass(frozen=True)
class PartitionResult:
    partition: str
    success: bool
    run_id: str
    encoded: int = 0
    already_embedded: int = 0
    seconds: float = 0.0  # the whole run: start-up, lookup, encoding, writes
    encode_seconds: float = 0.0  # embed_missing alone (lookup, encoding, writes)
    errors: list[str] = field(default_factory=list)


@dataclass
class BackfillOutcome:
    processes: int
    threads_per_process: int
    seconds: float
    status: BackfillStatus
    results: list[PartitionResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(result.success for result in self.results)

    @property
    def encoded(self) -> int:
        return sum(result.encoded for result in self.results)

    @property
    def per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


def threads_per_process(settings: Settings, processes: int) -> int:
    return max(1, settings.embed_threads // processes)


def training_set_exists(settings: Settings) -> bool:
    with connect(database_url(settings)) as conn:
        return conn.execute("select to_regclass('marts.training_set') is not null").fetchone()[0]


# Worker side (a spawned process) --------------------------------------------------------------------
_worker_settings: Settings | None = None
_worker_defs = None  # dg.Definitions, built once per worker: not for every partition run


def _init_worker(settings: Settings) -> None:
    from ticket_assets.definitions import build_definitions
    from ticket_assets.settings import use_settings

    global _worker_settings, _worker_defs
    _worker_settings = use_settings(settings)
    _worker_defs = build_definitions(settings)


def _run_partition(partition: str) -> PartitionResult:
    from ticket_assets.defs.keys import TICKET_EMBEDDINGS_BACKFILL
    from ticket_assets.runner import dagster_instance, materialize

    assert _worker_settings is not None, "worker not initialised"
    started = time.perf_counter()
    instance = dagster_instance(_worker_settings)
    try:
        outcome = materialize(
            f"key:{TICKET_EMBEDDINGS_BACKFILL.to_user_string()}",
            instance=instance,
            settings=_worker_settings,
            defs=_worker_defs,
            partition_key=partition,
            # The driver's progress bar owns the terminal; each run's progress lines stay in its
            # event log (the UI's run view).
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={"ticketops/trigger": "cli backfill"},
        )
    finally:
        instance.dispose()
    metadata = outcome.metadata.get(TICKET_EMBEDDINGS_BACKFILL.to_user_string(), {})
    return PartitionResult(
        partition=partition,
        success=outcome.success,
        run_id=outcome.run_id,
        encoded=int(metadata.get("encoded", 0)),
        already_embedded=int(metadata.get("already_embedded", 0)),
        seconds=time.perf_counter() - started,
        encode_seconds=float(metadata.get("encode_seconds", 0.0)),
        errors=outcome.errors or [f"step failed: {step}" for step in outcome.failed_steps],
    )


# Driver -----------------------------------------------------------------------------------------------
def run_embedding_backfill(
    settings: Settings,
    *,
    processes: int,
    partitions: list[str] | None = None,
    on_status: Callable[[BackfillStatus, list[PartitionResult]], None] | None = None,
    poll_s: float = 1.0,
) -> BackfillOutcome:
    """Run ``partitions`` (default: all) of the embedding backfill on ``processes`` worker processes.

    ``on_status`` is called every ``poll_s`` with the progress of those partitions (what they held
    at the start plus every vector of the model stored since) and the partitions finished so far;
    the outcome's status is counted per partition. A worker that dies (killed, out of memory) fails the call with
    ``BrokenProcessPool``; what it committed stays stored and a rerun resumes from there.
    """
    if processes < 1:
        raise ValueError("processes must be at least 1")
    keys = check_partition_keys(partitions or list(EMBEDDING_PARTITION_KEYS))
    threads = threads_per_process(settings, processes)
    worker_settings = settings.model_copy(update={"embed_threads": threads})
    model_id = model_id_for(settings.embed_runtime)
    url = database_url(settings)

    with connect(url) as conn:
        start = backfill_status(conn, model_id, keys)
        stored_before = stored_count(conn, model_id)

    def progress() -> BackfillStatus:
        # The model's row count (an index scan), not the per-partition join: polled every
        # poll_s, it must stay cheap at a million tickets.
        with connect(url) as conn:
            added = stored_count(conn, model_id) - stored_before
        return BackfillStatus(total=start.total, stored=min(start.total, start.stored + added))

    started = time.perf_counter()
    results: list[PartitionResult] = []
    # spawn: a fork would copy this process's open database connections and Dagster state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(processes, len(keys)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(worker_settings,),
    ) as pool:
        pending: set[Future[PartitionResult]] = {pool.submit(_run_partition, key) for key in keys}
        while pending:
            done, pending = wait(pending, timeout=poll_s, return_when=FIRST_COMPLETED)
            results.extend(future.result() for future in done)
            if on_status is not None:
                on_status(progress(), results)
    seconds = time.perf_counter() - started
    with connect(url) as conn:
        final = backfill_status(conn, model_id, keys)
    return BackfillOutcome(
        processes=processes,
        threads_per_process=threads,
        seconds=seconds,
        status=final,
        results=sorted(results, key=lambda result: result.partition),
    )
