"""The FastAPI application: ``uvicorn serving.app:create_app --factory`` or ``ticketops serve``."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
import httpx
from fastapi import Depends, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from psycopg_pool import AsyncConnectionPool

from serving.deps import ServingState, require_api_key
from serving.docs import add_docs
from serving.errors import validation_error_handler
from serving.examples import apply_examples
from serving.inference import InferenceEngine
from serving.memory import TicketIndexStore
from serving.metrics import ApiMetrics, MetricsMiddleware
from serving.model_store import KnowledgeBaseStore, ModelStore, ServingModel, poll_forever
from serving.prediction_log import PredictionLogWriter, from_record
from serving.routers import answer, console, feedback, health, memory, model, predictions, reports, triage
from serving.spool import Spool
from ticket_assets import __version__
from ticket_assets.core.labels import LabelNames, LabelNamesError
from ticket_assets.core.language import detect_language
from ticket_assets.ml.escalation import EscalationPolicy, EscalationRulesError
from ticket_assets.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Triage IT support tickets (topic + urgency) with the registered `champion` model, draft answers
from the knowledge base, and collect feedback.

* Every `/v1` route and `/reports/…` need an `X-API-Key` header when the server has API keys
  configured; only `/healthz`, `/readyz` and `/metrics` (and these docs) are open.
* Every response carries `X-Request-ID` (the call) and `Server-Timing` (where the time went).
* Each triaged ticket gets its own `request_id`: send it back to `/v1/feedback`.
* The model and knowledge base are hot-reloaded: `/v1/model` says which version answers.
"""

TAGS = [
    {"name": "triage", "description": "Topic and urgency classification."},
    {"name": "answer", "description": "Triage plus retrieval-augmented answer drafts."},
    {"name": "feedback", "description": "True labels and draft usefulness, for monitoring and retraining."},
    {"name": "memory", "description": "Major incidents and knowledge-base gaps found in past tickets."},
    {"name": "model", "description": "The model version being served."},
    {"name": "reports", "description": "Drift reports (HTML) written by the monitoring assets."},
    {"name": "health", "description": "Probes and metrics (no API key needed)."},
]


async def _start_serving(settings: Settings, metrics: ApiMetrics) -> ServingState:
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.services.migrations import check_schema
    from ticket_assets.services.postgres import start_database

    url = await anyio.to_thread.run_sync(start_database, settings)
    # The API never changes the schema: an old database is a deployment error (`ticketops migrate`).
    await anyio.to_thread.run_sync(check_schema, url)

    spool = None
    replay: list[tuple[int, dict]] = []
    if settings.log_durability != "off":
        spool = Spool(settings.resolved_spool_dir, segment_bytes=settings.spool_segment_bytes)
        replay = await anyio.to_thread.run_sync(spool.open)
        await spool.start()
        metrics.spool_outstanding.set_function(lambda: spool.outstanding)
    writer = PredictionLogWriter(
        url,
        buffer_max=settings.log_buffer_max,
        batch_size=settings.log_batch_size,
        flush_interval_s=settings.log_flush_interval_s,
        spool=spool,
        on_written=metrics.log_written.inc,
        on_dropped=metrics.log_dropped.inc,
        on_rejected=lambda kind, n: metrics.log_rejected.labels(kind=kind).inc(n),
        on_database=lambda up: metrics.database_up.set(1 if up else 0),
    )
    metrics.bind_queue_size(lambda: writer.queue_size)
    _replay(writer, spool, replay)
    await writer.start()

    # Small pool for the request path (feedback, readiness); the log writer has its own connection.
    db = AsyncConnectionPool(
        url, min_size=1, max_size=4, open=False, check=AsyncConnectionPool.check_connection
    )
    await db.open(wait=False)

    embedder = await anyio.to_thread.run_sync(get_embedder, settings)
    models = ModelStore(
        settings,
        validate=lambda m: _check_embedding_compatible(m, embedder.model_id),
        on_swap=lambda m: _on_model_swap(metrics, models, m),
    )
    kb = KnowledgeBaseStore(settings, on_change=lambda version: _on_index_change(metrics, version))
    tickets = TicketIndexStore(settings, on_change=lambda version: _freeze_heap())
    engine = InferenceEngine(
        embedder,
        models,
        threads=settings.inference_threads,
        microbatch=settings.microbatch_enabled,
        window_ms=settings.microbatch_window_ms,
        max_items=settings.microbatch_max_items,
        on_batch=metrics.batch_size.observe,
        explain=settings.trust_signals_enabled,
    )
    await engine.start()
    llm_client = (
        httpx.AsyncClient(timeout=httpx.Timeout(settings.llm_timeout_s)) if settings.llm_base_url else None
    )
    state = ServingState(
        settings=settings,
        metrics=metrics,
        models=models,
        kb=kb,
        engine=engine,
        log_writer=writer,
        spool=spool,
        db=db,
        llm_client=llm_client,
        embedder_id=embedder.model_id,
        tickets=tickets,
        escalation=EscalationPolicy.load(settings.escalation_rules_path)
        if settings.trust_signals_enabled
        else None,
        label_names=LabelNames.load(settings.label_names_path),
    )

    await models.refresh()
    await kb.refresh()
    if settings.similar_enabled:
        await tickets.refresh()
    if models.current is None:
        log.warning(
            "no model to serve yet (%s); /v1 routes answer 503 until one is registered", models.last_error
        )
    else:
        await engine.run(["warm-up: the first real request should not pay for lazy initialisation"])
    # lingua loads its language models on first use (~1-2 s): at startup, not on a request.
    await anyio.to_thread.run_sync(detect_language, "warm-up")
    if not settings.api_keys:
        log.warning(
            "no API keys configured (TICKETOPS_API_KEYS): /v1 routes are open to anyone who can reach them"
        )
    gc.collect()
    _freeze_heap()
    return state


def _freeze_heap() -> None:
    """Take what is loaded (libraries, the model, the indexes, lingua's language models) out of the
    cyclic collector's sight. Otherwise every full collection walks those objects with the GIL held:
    170-260 ms, a stall every few seconds under load and the whole 32-client p99 (BENCHMARKS.md,
    "API tail latency"). Called again after a hot reload: a replaced model or index leaves no
    reference cycles (reference counting frees it; tests/test_api_server.py checks), so freezing
    leaks nothing."""
    gc.freeze()


def _replay(writer: PredictionLogWriter, spool: Spool | None, replay: list[tuple[int, dict]]) -> None:
    """Rows a previous process acknowledged but did not write: insert them (idempotent on request_id)."""
    for segment, record in replay:
        try:
            row = from_record(record)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("spool: skipping an unreadable record (%s: %s)", type(exc).__name__, exc)
            if spool is not None:
                spool.release(segment)
            continue
        writer.enqueue([row], segment)


def _check_embedding_compatible(model: ServingModel, embedder_id: str) -> None:
    trained_on = model.model.embedding_model_id
    if trained_on is not None and trained_on != embedder_id:
        raise ValueError(
            f"version {model.version} was trained on {trained_on!r} embeddings but this server embeds with "
            f"{embedder_id!r} (TICKETOPS_EMBED_RUNTIME); not serving it"
        )


def _on_model_swap(metrics: ApiMetrics, models: ModelStore, loaded: ServingModel) -> None:
    metrics.set_model(loaded.name, loaded.version)
    if models.reloads:
        metrics.model_reloads.inc()
        _freeze_heap()


def _on_index_change(metrics: ApiMetrics, version: str) -> None:
    metrics.set_kb(version)
    _freeze_heap()


async def _stop_serving(state: ServingState) -> None:
    await state.engine.stop()
    lost = await state.log_writer.stop()
    if lost:
        log.error("%d prediction rows were not written", lost)
    if state.spool is not None:
        await state.spool.stop()
    await state.db.close()
    if state.llm_client is not None:
        await state.llm_client.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _start_serving(settings, metrics)
        poller = asyncio.create_task(
            poll_forever(
                settings.model_poll_s,
                [state.models, state.kb, *([state.tickets] if settings.similar_enabled else [])],
            ),
            name="model-reload-poller",
        )
        app.state.serving = state
        try:
            yield
        finally:
            poller.cancel()
            with suppress(asyncio.CancelledError):
                await poller
            await _stop_serving(state)
            app.state.serving = None

    app = FastAPI(
        title="TicketOps API",
        description=DESCRIPTION,
        version=__version__,
        openapi_tags=TAGS,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
        docs_url=None,  # self-hosted below: no CDN
        redoc_url=None,
    )
    add_docs(app)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
            expose_headers=["X-Request-ID", "Server-Timing"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    protected = [Depends(require_api_key)]
    for router in (
        triage.router,
        answer.router,
        feedback.router,
        predictions.router,
        memory.router,
        model.router,
        reports.router,
    ):
        app.include_router(router, dependencies=protected)
    app.include_router(health.router)
    app.include_router(console.router)
    settings.reports_dir.mkdir(parents=True, exist_ok=True)
    app.openapi = lambda: openapi_with_limits(app, settings)  # type: ignore[method-assign]
    return app


def openapi_with_limits(app: FastAPI, settings: Settings) -> dict:
    """The generated schema with this deployment's limits and the served model's labels filled in,
    so clients (and schemathesis) see exactly what the routes accept. Rebuilt when the model changes."""
    state = getattr(app.state, "serving", None)
    model = None if state is None else state.models.current
    key = None if model is None else model.version
    cached = getattr(app.state, "openapi_key", None)
    if app.openapi_schema is None or cached != key:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            license_info=app.license_info,
        )
        components = schema["components"]["schemas"]
        components["Ticket"]["properties"]["text"]["maxLength"] = settings.max_text_chars
        components["BatchTriageRequest"]["properties"]["tickets"]["maxItems"] = settings.max_batch_size
        feedback_schema(
            components, None if model is None else (model.topics, model.urgencies), model and model.routing
        )
        apply_examples(
            schema,
            [] if model is None else list(model.topics),
            [] if model is None else list(model.urgencies),
            None if model is None else jsonable_encoder(model.describe(state.label_names)),
            settings.max_text_chars,
        )
        app.openapi_schema = schema
        app.state.openapi_key = key
    return app.openapi_schema


def feedback_schema(
    components: dict,
    labels: tuple[tuple[str, ...], tuple[str, ...]] | None,
    routing: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """FeedbackRequest as the route checks it: at least one field given; with a model loaded, either
    known labels (`new_topic` false) or a new lower-case topic (`new_topic: true`), and routing
    corrections (`true_labels`) only for the model's routing targets and labels."""
    from copy import deepcopy

    from serving.routers.feedback import NEW_LABEL

    base = components["FeedbackRequest"]
    base["anyOf"] = [
        {"required": [name], "properties": {name: {"type": kind}}}
        for name, kind in (
            ("true_topic", "string"),
            ("true_urgency", "string"),
            ("draft_helpful", "boolean"),
            ("comment", "string"),
        )
    ] + [{"required": ["true_labels"], "properties": {"true_labels": {"type": "object", "minProperties": 1}}}]
    if labels is None:
        return
    topics, urgencies = labels
    props = base["properties"]
    props["true_labels"]["anyOf"] = [
        {
            "type": "object",
            "properties": {
                name: {"type": "string", "enum": list(values)} for name, values in (routing or {}).items()
            },
            "additionalProperties": False,
        },
        {"type": "null"},
    ]
    if urgencies:
        props["true_urgency"]["anyOf"] = [{"type": "string", "enum": list(urgencies)}, {"type": "null"}]
    for example in base.get("examples", []):
        example["true_topic"] = topics[0]
        if urgencies:
            example["true_urgency"] = urgencies[0]
        else:
            example.pop("true_urgency", None)
        if routing:
            example["true_labels"] = {name: values[0] for name, values in routing.items() if values}
        else:
            example.pop("true_labels", None)
    known, new = deepcopy(base), deepcopy(base)
    known["title"], new["title"] = "FeedbackWithKnownLabels", "FeedbackWithNewTopic"
    known["properties"]["new_topic"] = {"const": False, "default": False}
    known["properties"]["true_topic"]["anyOf"] = [{"type": "string", "enum": list(topics)}, {"type": "null"}]
    new["properties"]["new_topic"] = {"const": True}
    new["required"] = [*new.get("required", []), "new_topic"]
    new["properties"]["true_topic"]["anyOf"] = [
        {"type": "string", "pattern": NEW_LABEL.pattern},
        {"type": "null"},
    ]
    new.pop("examples", None)
    components["FeedbackRequest"] = {
        "title": "FeedbackRequest",
        "description": "Known labels of the served model, or a new topic flagged with `new_topic: true`.",
        "oneOf": [known, new],
    }


def serve(settings: Settings | None = None, *, host: str | None = None, port: int | None = None) -> None:
    """Run the API with uvicorn; host, port and workers default to the settings.

    One worker serves the app built from these settings. Several workers need uvicorn's factory
    string: each worker then builds its own app from the environment.
    """
    import uvicorn

    from ticket_assets.services.migrations import SchemaOutdatedError, check_schema
    from ticket_assets.services.postgres import start_database

    settings = settings or get_settings()
    try:
        check_schema(start_database(settings))
    except SchemaOutdatedError as exc:
        raise SystemExit(f"ticketops API not started: {exc}") from None
    try:
        EscalationPolicy.load(settings.escalation_rules_path)
        LabelNames.load(settings.label_names_path)
    except (EscalationRulesError, LabelNamesError) as exc:
        raise SystemExit(f"ticketops API not started: {exc}") from None
    target = create_app(settings) if settings.api_workers == 1 else "serving.app:create_app"
    uvicorn.run(
        target,
        factory=settings.api_workers > 1,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=settings.api_workers,
        log_level="info",
    )
