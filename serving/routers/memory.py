"""GET /v1/incidents and /v1/kb-gaps: what the ticket-memory assets found, read from PostgreSQL.

``major_incidents`` writes ``ops.incidents`` and ``kb_gaps`` writes ``ops.kb_gaps``; the API only
reads them (the desk's view of "what is on fire" and "which articles to write").
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import psycopg
import psycopg_pool
from fastapi import APIRouter, HTTPException, Query, status
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from serving.deps import StateDep
from serving.errors import error_responses

router = APIRouter(prefix="/v1", tags=["memory"])

INCIDENTS_SQL = """
select i.incident_id, i.detected_at, i.first_seen, i.last_seen, i.size, i.top_terms, i.summary, i.run_id,
       (select count(*) from ops.predictions p where p.incident_id = i.incident_id) as predictions
from ops.incidents i
where i.last_seen > now() - make_interval(hours => %(hours)s)
order by i.last_seen desc
limit %(limit)s
"""

GAPS_SQL = """
select rank, run_id, computed_at, size, trend, mean_kb_score, shortfall, title_terms, examples,
       unhelpful_drafts, incident_ids
from ops.kb_gaps order by rank limit %(limit)s
"""


class IncidentExample(BaseModel):
    id: str = Field(description="Ticket id, or `prediction:<request_id>` for a ticket seen only by the API.")
    text: str


class Incident(BaseModel):
    incident_id: str
    detected_at: datetime
    first_seen: datetime = Field(description="The first report of the burst.")
    last_seen: datetime = Field(description="The latest report (an ongoing incident keeps moving it).")
    size: int = Field(description="Tickets in the burst.")
    baseline_per_window: float = Field(description="Tickets like these the previous weeks had per window.")
    top_terms: list[str]
    examples: list[IncidentExample]
    departments: dict[str, int]
    channels: dict[str, int]
    predictions: int = Field(description="Logged predictions tagged with this `incident_id`.")
    run_id: str | None = Field(description="The Dagster run that detected it.")
    run_url: str | None = Field(description="That run in the Dagster UI.")


class Incidents(BaseModel):
    incidents: list[Incident]


class GapExample(BaseModel):
    id: str
    kb_score: float = Field(description="Cosine of its best knowledge-base passage.")
    text: str


class KbGap(BaseModel):
    rank: int = Field(description="1 = the largest shortfall.")
    size: int
    trend: float = Field(description="Share of its tickets in the later half of the period (0.5 = flat).")
    mean_kb_score: float
    shortfall: float = Field(description="Summed distance of its tickets' best passages below the weak line.")
    title_terms: list[str] = Field(description="Suggested terms for the article's title.")
    examples: list[GapExample]
    unhelpful_drafts: int = Field(description="Drafts agents marked unhelpful among its tickets.")
    incident_ids: list[str] = Field(
        description="Major incidents whose tickets it holds (an outage, not an article)."
    )


class KbGaps(BaseModel):
    computed_at: datetime | None = Field(description="When kb_gaps last ran (null: never).")
    run_id: str | None
    run_url: str | None
    gaps: list[KbGap]


_ERRORS = error_responses(
    status.HTTP_401_UNAUTHORIZED, status.HTTP_422_UNPROCESSABLE_CONTENT, status.HTTP_503_SERVICE_UNAVAILABLE
)


async def _rows(state: Any, sql: str, params: dict[str, int]) -> list[dict[str, Any]]:
    try:
        async with state.db.connection(timeout=2) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql, params)
            return await cur.fetchall()
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable") from None


def _run_url(state: Any, run_id: str | None) -> str | None:
    return f"{state.settings.dagster_url}/runs/{run_id}" if run_id else None


@router.get(
    "/incidents",
    response_model=Incidents,
    summary="Major incidents: bursts of similar tickets, newest activity first",
    description=(
        "Incidents the `major_incidents` asset detected whose latest report is within `hours`: size, "
        "top terms, examples, departments and channels, the predictions tagged with it and the run "
        "that detected it."
    ),
    responses=_ERRORS,
)
async def incidents(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=200, description="At most this many incidents.")] = 20,
    hours: Annotated[int, Query(ge=1, le=24 * 90, description="Latest report within this many hours.")] = 72,
) -> Incidents:
    rows = await _rows(state, INCIDENTS_SQL, {"limit": limit, "hours": hours})
    return Incidents(
        incidents=[
            Incident(
                incident_id=r["incident_id"],
                detected_at=r["detected_at"],
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                size=r["size"],
                baseline_per_window=float(r["summary"].get("baseline_per_window", 0.0)),
                top_terms=list(r["top_terms"]),
                examples=r["summary"].get("examples", []),
                departments=r["summary"].get("departments", {}),
                channels=r["summary"].get("channels", {}),
                predictions=r["predictions"],
                run_id=r["run_id"],
                run_url=_run_url(state, r["run_id"]),
            )
            for r in rows
        ]
    )


@router.get(
    "/kb-gaps",
    response_model=KbGaps,
    summary="Knowledge-base gaps: the articles to write, largest shortfall first",
    description=(
        "The gaps of the latest `kb_gaps` run: groups of recent tickets the knowledge base answers "
        "badly (or whose drafts agents marked unhelpful), with trend, examples, suggested title terms "
        "and the major incidents they belong to."
    ),
    responses=_ERRORS,
)
async def kb_gaps(
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many gaps.")] = 10,
) -> KbGaps:
    rows = await _rows(state, GAPS_SQL, {"limit": limit})
    run_id = rows[0]["run_id"] if rows else None
    return KbGaps(
        computed_at=rows[0]["computed_at"] if rows else None,
        run_id=run_id,
        run_url=_run_url(state, run_id),
        gaps=[
            KbGap(
                rank=r["rank"],
                size=r["size"],
                trend=r["trend"],
                mean_kb_score=r["mean_kb_score"],
                shortfall=r["shortfall"],
                title_terms=list(r["title_terms"]),
                examples=r["examples"],
                unhelpful_drafts=r["unhelpful_drafts"],
                incident_ids=list(r["incident_ids"]),
            )
            for r in rows
        ],
    )
