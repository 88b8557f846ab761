"""The API in the lineage: external assets the platform does not materialise but reads and feeds.

The API consumes ``champion_model`` and ``kb_index`` (hot-reloaded) and writes ``ops.predictions``
and ``ops.feedback``, which dbt's production marts read. The logs are not declared downstream of the
API: feedback labels flow back into the training set, so that edge would close a cycle (training set
→ model → API → feedback → training set), which an asset graph cannot hold. Their descriptions and
``written_by`` metadata name the API instead.
"""

import dagster as dg

from ticket_assets.defs.keys import CHAMPION_MODEL
from ticket_assets.settings import Settings

SERVING_API = dg.AssetKey("ticketops_api")
KB_INDEX = dg.AssetKey("kb_index")
OWNERS = ["team:ml-platform"]


def serving_api_spec(settings: Settings) -> dg.AssetSpec:
    """The API's node, with links to its docs and console at the configured address."""
    return _SERVING_API.merge_attributes(
        metadata={
            "docs": dg.MetadataValue.url(f"{settings.api_url}/docs"),
            "redoc": dg.MetadataValue.url(f"{settings.api_url}/redoc"),
            "console": dg.MetadataValue.url(f"{settings.api_url}/console"),
        }
    )


_SERVING_API = dg.AssetSpec(
    key=SERVING_API,
    deps=[CHAMPION_MODEL, KB_INDEX],
    group_name="serving",
    owners=OWNERS,
    kinds={"fastapi"},
    description=(
        "The triage/answer API (`ticketops serve`): serves the `champion` model version and the published "
        "knowledge-base index, reloading both when they change; /docs, /redoc and the agent console /console."
    ),
    metadata={"entrypoint": "serving.app:create_app", "routes": "/v1/triage, /v1/answer, /v1/feedback"},
)

predictions_log = dg.AssetSpec(
    key=dg.AssetKey(["ops", "predictions"]),
    group_name="serving",
    owners=OWNERS,
    kinds={"postgres"},
    description=(
        "One row per ticket the API triaged: request id, topic and urgency with confidences, model version, "
        "latency (text redacted on deployments that ask for it). Written by the API, read by the monitoring marts."
    ),
    metadata={
        "table": "ops.predictions",
        "written_by": "ticketops_api (serving.prediction_log.PredictionLogWriter)",
    },
)

feedback_log = dg.AssetSpec(
    key=dg.AssetKey(["ops", "feedback"]),
    group_name="serving",
    owners=OWNERS,
    kinds={"postgres"},
    description=(
        "Agents' corrections and ratings for served predictions (POST /v1/feedback, the agent console), one "
        "row per request id. The labels flow back into the training set."
    ),
    metadata={"table": "ops.feedback", "written_by": "ticketops_api (serving.routers.feedback)"},
)


def serving_assets_for(settings: Settings) -> list[dg.AssetSpec]:
    return [serving_api_spec(settings), predictions_log, feedback_log]
