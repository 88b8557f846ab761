"""Ticket memory area: the index of past tickets the API finds similar tickets and duplicates in."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from ticket_assets.defs.metadata import markdown_table, png_markdown
from ticket_assets.defs.resources import AlertsResource, PlatformSettingsResource, PostgresResource

OWNERS = ["team:ml-platform"]
STG_TICKETS = dg.AssetKey(["staging", "stg_tickets"])


def incident_runs(conn, incident_ids: list[str]) -> dict[str, str]:
    """The Dagster run that first detected each incident (its metadata lists the incident)."""
    if not incident_ids:
        return {}
    rows = conn.execute(
        "select incident_id, run_id from ops.incidents where incident_id = any(%s) and run_id is not null",
        (list(incident_ids),),
    ).fetchall()
    return dict(rows)


def _run_link(dagster_url: str):
    def link(run_id: str | None, label: str | None = None) -> str:
        if not run_id:
            return "–"
        return f"[{label or run_id[:8]}]({dagster_url}/runs/{run_id})"

    return link


@dg.asset(
    key="ticket_index",
    deps=["ticket_embeddings", STG_TICKETS],
    group_name="memory",
    kinds={"qdrant", "python"},
    owners=OWNERS,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "Every embedded ticket with its payload (labels, created, channel, department, status, resolution) in "
        "an in-process Qdrant Edge shard (HNSW), or a Qdrant server when QDRANT_URL is set. Incremental: only "
        "tickets whose text or payload changed are upserted into a version readers do not see yet, which an "
        "atomic pointer swap (server: alias switch) then publishes."
    ),
)
def ticket_index(
    context: dg.AssetExecutionContext, postgres: PostgresResource, platform: PlatformSettingsResource
) -> dg.MaterializeResult:
    from ticket_assets.memory.ticket_index import index_rows, sync_published, vector_fetcher
    from ticket_assets.ml.embed import get_embedder

    settings = platform.get()
    model_id = get_embedder(settings).model_id
    with postgres.connect() as conn:
        rows = index_rows(conn, model_id)
        if rows.is_empty():
            raise dg.Failure("no embedded tickets: materialise ticket_embeddings first")
        report = sync_published(rows, vector_fetcher(conn, model_id), settings, model_id, context.log.info)
    return dg.MaterializeResult(
        metadata={
            "index_version": report.version,
            "published": report.published,
            "full_build": report.full_build,
            "points": report.n_points,
            "upserted": report.upserted,
            "deleted": report.deleted,
            "unchanged": report.unchanged,
            "sync_seconds": dg.MetadataValue.float(round(report.seconds, 2)),
            "embedding_model": model_id,
            **(
                {"engine": "qdrant server (alias ticket_index)"}
                if settings.qdrant_url
                else {
                    "engine": "qdrant-edge (in-process HNSW)",
                    "index_path": dg.MetadataValue.path(str(settings.ticket_index_dir)),
                }
            ),
        }
    )


class IncidentWindow(dg.Config):
    window_minutes: int = 60
    baseline_days: int = 14
    # ISO 8601 end of the window; default now (replays and tests pass an explicit time).
    window_end: str | None = None


@dg.asset(
    key="major_incidents",
    deps=["ticket_embeddings", dg.AssetKey(["raw", "tickets"])],
    group_name="memory",
    kinds={"postgres", "python"},
    owners=OWNERS,
    description=(
        "Bursts of mutually similar tickets (and logged predictions) in the latest window, far above the "
        "rate the previous weeks predict for tickets like them: the outage forty people report at once. "
        "Writes `ops.incidents` (one row per incident, extended while it lasts) and `incident_id` on the "
        "matching `ops.predictions`; `major_incident_sensor` alerts on-call once per incident."
    ),
)
def major_incidents(
    context: dg.AssetExecutionContext,
    config: IncidentWindow,
    postgres: PostgresResource,
    platform: PlatformSettingsResource,
) -> dg.MaterializeResult:
    from ticket_assets.memory.incidents import (
        assign_known,
        baseline,
        detect_incidents,
        known_incidents,
        store_incidents,
        window_items,
    )
    from ticket_assets.ml.embed import get_embedder

    settings = platform.get()
    end = datetime.fromisoformat(config.window_end) if config.window_end else datetime.now(UTC)
    window = timedelta(minutes=config.window_minutes)
    span = timedelta(days=config.baseline_days)
    embedder = get_embedder(settings)
    with postgres.connect() as conn:
        items = window_items(conn, end - window, end)
        base_vectors, base_texts = baseline(conn, embedder.model_id, end - window - span, end - window)
        vectors = embedder.encode([item.text for item in items]) if items else None
        found = detect_incidents(items, vectors, base_vectors, span, window, base_texts) if items else []
        pairs = assign_known(found, known_incidents(conn, embedder.model_id, end - 2 * window))
        ids = store_incidents(conn, pairs, embedder.model_id, context.run_id)
        runs = incident_runs(conn, ids)
    link = _run_link(settings.dagster_url)
    rows = [
        (
            target,
            "continued" if known else "new",
            i.size,
            f"{i.baseline_per_window:.2f}",
            i.first_seen.strftime("%Y-%m-%d %H:%M"),
            ", ".join(i.top_terms),
            ", ".join(list(i.departments)[:3]),
            link(runs.get(target)),
        )
        for (i, known), target in zip(pairs, ids, strict=True)
    ]
    return dg.MaterializeResult(
        metadata={
            "window_end": end.isoformat(),
            "window_items": len(items),
            "baseline_tickets": int(len(base_vectors)),
            "incidents": len(ids),
            "new_incidents": sum(known is None for _, known in pairs),
            "incident_ids": dg.MetadataValue.json(ids),
            "detected_by_runs": dg.MetadataValue.json(runs),
            "summary": dg.MetadataValue.md(
                markdown_table(
                    [
                        "incident",
                        "state",
                        "tickets",
                        "baseline/window",
                        "first seen",
                        "top terms",
                        "departments",
                        "detected by run",
                    ],
                    rows,
                )
                if rows
                else "no incident in this window"
            ),
        }
    )


@dg.op(config_schema={"incident_id": str}, description="Sends the on-call alert for one incident.")
def alert_incident(
    context: dg.OpExecutionContext, postgres: PostgresResource, alerts: AlertsResource
) -> None:
    incident = context.op_config["incident_id"]
    with postgres.connect() as conn:
        row = conn.execute(
            "select size, first_seen, top_terms, summary, run_id from ops.incidents where incident_id = %s",
            (incident,),
        ).fetchone()
    if row is None:
        raise dg.Failure(f"incident {incident} not found in ops.incidents")
    size, first_seen, terms, summary, run_id = row
    examples = "; ".join(e["text"][:80] for e in summary.get("examples", []))
    alerts.send(
        f"Major incident {incident}: {size} similar tickets",
        f"Since {first_seen:%Y-%m-%d %H:%M} UTC, about: {', '.join(terms)}. "
        f"Departments: {', '.join(list(summary.get('departments', {}))[:5])}. Examples: {examples}",
        severity="critical",
        source="major_incident_sensor",
        dedup_key=f"incident:{incident}",
        # The run that detected it (its metadata lists the incident's tickets).
        url=alerts.run_url(run_id) if run_id else None,
    )


@dg.job(name="incident_alert", description="Alert on-call about one detected major incident.")
def incident_alert_job():
    alert_incident()


@dg.sensor(
    name="major_incident_sensor",
    job=incident_alert_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reads ops.incidents (never detects): one alert run per new incident (run_key, cursor on seq).",
)
def major_incident_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
    last_seq = int(context.cursor or 0)
    with postgres.connect() as conn:
        if conn.execute("select to_regclass('ops.incidents')").fetchone()[0] is None:
            return dg.SkipReason("ops.incidents does not exist yet")
        rows = conn.execute(
            "select seq, incident_id, size from ops.incidents where seq > %s order by seq limit 100",
            (last_seq,),
        ).fetchall()
    if not rows:
        return dg.SkipReason("no new incident")
    context.update_cursor(str(rows[-1][0]))
    return [
        dg.RunRequest(
            run_key=f"incident-{incident}",
            run_config={"ops": {"alert_incident": {"config": {"incident_id": incident}}}},
            tags={
                "ticketops/trigger": "major_incident",
                "ticketops/incident_id": incident,
                "ticketops/size": str(size),
            },
        )
        for _, incident, size in rows
    ]


class GapWindow(dg.Config):
    days: int = 30  # tickets created in the last N days (of the newest ticket), at most max_tickets
    max_tickets: int = 5000


@dg.asset(
    key="kb_gaps",
    deps=["kb_index", "ticket_embeddings", STG_TICKETS],
    group_name="memory",
    kinds={"qdrant", "matplotlib"},
    owners=OWNERS,
    description=(
        "What the knowledge base is missing: recent tickets whose best KB passage is weak, or whose draft "
        "agents marked unhelpful, grouped by meaning. Each gap: size, trend, examples and suggested title "
        "terms for the article to write; a bar chart of the largest gaps. Stored in `ops.kb_gaps` (served by "
        "`GET /v1/kb-gaps`), each linked to the major incidents whose tickets it holds."
    ),
)
def kb_gaps(
    context: dg.AssetExecutionContext,
    config: GapWindow,
    postgres: PostgresResource,
    platform: PlatformSettingsResource,
) -> dg.MaterializeResult:
    import numpy as np

    from ticket_assets.memory.incidents import known_incidents
    from ticket_assets.memory.kb_gaps import (
        WEAK_SCORE,
        GapTicket,
        find_gaps,
        link_incidents,
        render_gaps_png,
        store_gaps,
    )
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.ml.embedding_store import EMBEDDING_DIM, load_embeddings
    from ticket_assets.rag.index import KnowledgeBase

    settings = platform.get()
    kb = KnowledgeBase.open(settings)
    embedder = get_embedder(settings)
    with postgres.connect() as conn:
        rows = conn.execute(
            "select ticket_id, event_at, text, text_hash from staging.stg_tickets where not is_duplicate"
            " and event_at >= (select max(event_at) from staging.stg_tickets) - make_interval(days => %s)"
            " order by event_at desc limit %s",
            (config.days, config.max_tickets),
        ).fetchall()
        hashes, matrix = load_embeddings(conn, embedder.model_id, [r[3] for r in rows])
        unhelpful = conn.execute(
            "select p.request_id::text, p.created_at, p.text from ops.feedback f join ops.predictions p"
            " using (request_id) where f.draft_helpful = false and p.text is not null"
            " and p.created_at >= now() - make_interval(days => %s)",
            (config.days,),
        ).fetchall()
    position = {h: i for i, h in enumerate(hashes)}
    rows = [r for r in rows if r[3] in position]
    vectors = matrix[[position[r[3]] for r in rows]] if rows else np.zeros((0, EMBEDDING_DIM), np.float32)
    if unhelpful:
        vectors = np.vstack([vectors, embedder.encode([r[2] for r in unhelpful])])
    scores = [kb.search(v, k=1)[0].score if kb.n_chunks else 0.0 for v in vectors]
    tickets = [GapTicket(r[0], r[1], r[2], s) for r, s in zip(rows, scores, strict=False)]
    tickets += [
        GapTicket(f"prediction:{r[0]}", r[1], r[2], s, unhelpful=True)
        for r, s in zip(unhelpful, scores[len(rows) :], strict=True)
    ]
    gaps = find_gaps(tickets, vectors)
    since = min((t.created_at for t in tickets if t.created_at is not None), default=None)
    with postgres.connect() as conn:
        # Gaps that are really an outage (their tickets form a major incident) say so.
        incidents = known_incidents(conn, embedder.model_id, since) if since is not None else []
        gaps = link_incidents(gaps, incidents)
        store_gaps(conn, gaps, context.run_id)
        runs = incident_runs(conn, sorted({i for g in gaps for i in g.incident_ids}))
    link = _run_link(settings.dagster_url)
    context.log.info(f"{len(gaps)} gap(s) among {len(tickets)} ticket(s), stored in ops.kb_gaps")
    table = markdown_table(
        [
            "#",
            "tickets",
            "shortfall",
            "trend (later half)",
            "mean KB score",
            "suggested title terms",
            "major incident (detecting run)",
            "example",
        ],
        [
            (
                i + 1,
                g.size,
                g.shortfall,
                f"{g.trend:.0%}",
                g.mean_kb_score,
                ", ".join(g.title_terms),
                ", ".join(link(runs.get(inc), inc) for inc in g.incident_ids) or "–",
                g.examples[0]["text"],
            )
            for i, g in enumerate(gaps[:15])
        ],
    )
    return dg.MaterializeResult(
        metadata={
            "tickets_considered": len(tickets),
            "unserved_tickets": sum(t.best_kb_score < WEAK_SCORE or t.unhelpful for t in tickets),
            "gaps": len(gaps),
            "gaps_linked_to_incidents": sum(bool(g.incident_ids) for g in gaps),
            "stored_in": "ops.kb_gaps (served by GET /v1/kb-gaps)",
            "kb_version": kb.version,
            "top_gap_terms": dg.MetadataValue.json(gaps[0].title_terms if gaps else []),
            "gaps_table": dg.MetadataValue.md(
                table if gaps else "no gap: every group of tickets finds a good passage"
            ),
            "gaps_detail": dg.MetadataValue.json(
                [
                    {
                        "size": g.size,
                        "trend": g.trend,
                        "shortfall": g.shortfall,
                        "terms": g.title_terms,
                        "examples": g.examples,
                        "incident_ids": list(g.incident_ids),
                    }
                    for g in gaps[:15]
                ]
            ),
            "plot": png_markdown(render_gaps_png(gaps), "knowledge-base gaps"),
        }
    )


memory_assets = [ticket_index, major_incidents, kb_gaps]
memory_jobs = [incident_alert_job]
memory_sensors = [major_incident_sensor]
