"""Embedding + prediction off the event loop, with optional micro-batching.

All CPU work runs in one small, explicitly sized thread pool: the embedder already uses
``embed_threads`` cores, so more concurrent inference threads would only oversubscribe the CPU.

With micro-batching on, one consumer task takes every request waiting for the pool (plus, when
several were waiting, those arriving within ``window``) and embeds + predicts them as one batch.
Measured here (BENCHMARKS.md, "API"): the int8 ONNX encoder costs about the same CPU per ticket in
a batch as alone, but the classifier's per-call overhead (TF-IDF, calibrators) and the thread
hand-offs are paid once per batch, so server CPU per request drops by a fifth to a half under 8-32
concurrent clients and throughput rises accordingly; a lone request is dispatched at once, so
single-client latency does not change. Off, every request is its own batch in the same pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serving.model_store import ModelStore, ServingModel

if TYPE_CHECKING:
    from ticket_assets.ml.embed import Embedder
    from ticket_assets.ml.predict import TriagePrediction

log = logging.getLogger(__name__)


class ModelNotReady(RuntimeError):
    """No model version is loaded yet (no champion alias, or the registry is unreachable)."""


@dataclass(frozen=True)
class InferenceResult:
    model: ServingModel
    predictions: list[TriagePrediction]  # one per text, in input order
    embeddings: np.ndarray  # (n, dim), reused for retrieval
    queue_ms: float  # waiting for the pool / the batch window
    embed_ms: float  # the whole batch's encode time (shared by the requests in it)
    model_ms: float
    batch_size: int


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future[InferenceResult]
    enqueued: float


def _compute(
    embedder: Embedder, serving_model: ServingModel, texts: list[str], explain: bool = True
) -> tuple[np.ndarray, list[TriagePrediction], float, float]:
    t0 = time.perf_counter()
    vectors = embedder.encode(texts)
    t1 = time.perf_counter()
    # Passing the embedder's id makes the model refuse vectors from a runtime it was not trained on.
    predictions = serving_model.model.predict(
        texts, embeddings=vectors, embedding_model_id=embedder.model_id, explain=explain
    )
    t2 = time.perf_counter()
    return vectors, predictions, (t1 - t0) * 1000, (t2 - t1) * 1000


class InferenceEngine:
    def __init__(
        self,
        embedder: Embedder,
        models: ModelStore,
        *,
        threads: int = 1,
        microbatch: bool = True,
        window_ms: float = 2.0,
        max_items: int = 32,
        on_batch: Callable[[int], None] | None = None,
        explain: bool = True,
    ) -> None:
        self._explain = explain
        self._embedder = embedder
        self._models = models
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")
        self.microbatch = microbatch
        self._window_s = window_ms / 1000
        self._max_items = max_items
        self._on_batch = on_batch or (lambda n: None)
        self._queue: asyncio.Queue[_Job] | None = None
        self._consumer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.microbatch and self._consumer is None:
            self._queue = asyncio.Queue()
            self._consumer = asyncio.create_task(self._consume(), name="inference-microbatcher")

    async def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, texts: Sequence[str]) -> InferenceResult:
        job = _Job(list(texts), asyncio.get_running_loop().create_future(), time.perf_counter())
        if self._models.current is None:
            raise ModelNotReady("no model version is loaded yet")
        if self._queue is None:
            return (await self._run_batch([job]))[0]
        await self._queue.put(job)
        return await job.future

    # Batching -----------------------------------------------------------------------------------
    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [await self._queue.get()]
            await self._gather_more(jobs)
            try:
                results = await self._run_batch(jobs)
            except Exception as exc:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(jobs, results, strict=True):
                if not job.future.done():  # the client may have gone away
                    job.future.set_result(result)

    async def _gather_more(self, jobs: list[_Job]) -> None:
        """Add waiting jobs, then (under concurrency) those arriving within the window, up to
        ``max_items`` texts. A lone request never waits: with nothing else queued there is no sign
        that anyone would join its batch."""
        assert self._queue is not None
        size = sum(len(job.texts) for job in jobs)
        while size < self._max_items and not self._queue.empty():
            job = self._queue.get_nowait()
            jobs.append(job)
            size += len(job.texts)
        if len(jobs) == 1:
            return
        deadline = time.perf_counter() + self._window_s
        while size < self._max_items:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            try:
                job = await asyncio.wait_for(self._queue.get(), timeout=remaining)
            except TimeoutError:
                return
            jobs.append(job)
            size += len(job.texts)

    async def _run_batch(self, jobs: list[_Job]) -> list[InferenceResult]:
        serving_model = self._models.current  # one snapshot for the whole batch
        if serving_model is None:
            raise ModelNotReady("no model version is loaded yet")
        texts = [text for job in jobs for text in job.texts]
        loop = asyncio.get_running_loop()
        vectors, predictions, embed_ms, model_ms = await loop.run_in_executor(
            self._executor, _compute, self._embedder, serving_model, texts, self._explain
        )
        self._on_batch(len(texts))
        done = time.perf_counter()
        results = []
        offset = 0
        for job in jobs:
            end = offset + len(job.texts)
            waited_ms = (done - job.enqueued) * 1000 - embed_ms - model_ms
            results.append(
                InferenceResult(
                    model=serving_model,
                    predictions=predictions[offset:end],
                    embeddings=vectors[offset:end],
                    queue_ms=max(0.0, waited_ms),
                    embed_ms=embed_ms,
                    model_ms=model_ms,
                    batch_size=len(texts),
                )
            )
            offset = end
        return results
