"""Request and response examples for the OpenAPI document, in the served model's own labels.

Each one is what a real call sends or gets back (tests/test_api_docs.py replays them against the
server and validates them against the schema), so /docs shows bodies that work when tried.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from serving.errors import ERROR_EXAMPLES
from ticket_assets.core.labels import readable_label

REQUEST_ID = "0b7d3c52-6f0a-4e59-9d5e-3f1c2a7b9e10"
CALL_ID = "5f0e1c9a-2b7d-4f3e-8a61-0c9d8e7f6a5b"
TICKET = {
    "title": "Cannot connect to VPN",
    "text": "Since this morning the VPN client says 'authentication failed' although my password works in Outlook.",
    "channel": "email",
    "requester": "j.doe@example.com",
}
LIMIT_TOO_SMALL = {
    "summary": "limit below 1",
    "value": {
        "detail": [
            {
                "type": "greater_than_equal",
                "loc": ["query", "limit"],
                "msg": "Input should be greater than or equal to 1",
                "ctx": {"ge": 1},
            }
        ]
    },
}
SECOND_TICKET = {"text": "My laptop battery swells and the case bends."}


def _probabilities(labels: list[str], top: float) -> dict[str, float]:
    if not labels:
        return {}
    rest = round((1.0 - top) / max(len(labels) - 1, 1), 4)
    return {label: (top if i == 0 else rest) for i, label in enumerate(labels)}


def _triage(
    topics: list[str],
    urgencies: list[str],
    request_id: str,
    routing: dict[str, list[str]] | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    urgency = urgencies[-1] if urgencies else None
    topic_names = (model or {}).get("topic_names") or {}
    routing_names = (model or {}).get("routing_names") or {}
    return {
        "request_id": request_id,
        "topic": topics[0],
        "topic_name": topic_names.get(topics[0], readable_label(topics[0])),
        "topic_confidence": 0.86,
        "topic_probabilities": _probabilities(topics, 0.86),
        "urgency": urgency,
        "urgency_confidence": 0.71 if urgency else None,
        "urgency_probabilities": _probabilities(list(reversed(urgencies)), 0.71) if urgencies else None,
        "model_urgency": urgency,
        "escalated": False,
        "escalation_rule": None,
        "out_of_scope": False,
        "out_of_scope_score": 0.41,
        "reasons": ["term: vpn", "term: authentication", "nearest: syn-11-base-812"],
        "low_confidence": False,
        "topic_tier": "auto",
        "urgency_tier": "suggest" if urgency else None,
        "urgency_low_confidence": False if urgency else None,
        "routing": {
            name: {
                "label": labels[0],
                "label_name": routing_names.get(name, {}).get(labels[0], readable_label(labels[0])),
                "confidence": 0.9,
                "probabilities": _probabilities(labels, 0.9),
                "tier": "suggest",
                "low_confidence": False,
            }
            for name, labels in (routing or {}).items()
            if labels
        },
        "needs_review": False,
        "similar": None,
        "duplicate_of": None,
    }


def request_examples(topics: list[str], urgencies: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """Named request-body examples per (path, method)."""
    known_topic = topics[0] if topics else "hardware"
    other_topic = topics[1] if len(topics) > 1 else known_topic
    confirm: dict[str, Any] = {"request_id": REQUEST_ID, "true_topic": known_topic, "draft_helpful": True}
    if urgencies:
        confirm["true_urgency"] = urgencies[-1]
    return {
        ("/v1/triage", "post"): {
            "one_ticket": {"summary": "One ticket", "value": {"ticket": TICKET}},
            "batch": {"summary": "A batch of tickets", "value": {"tickets": [TICKET, SECOND_TICKET]}},
        },
        ("/v1/answer", "post"): {
            "answer": {
                "summary": "Triage and draft from 3 passages",
                "value": {"ticket": TICKET, "top_k": 3},
            },
        },
        ("/v1/feedback", "post"): {
            "accept": {"summary": "The prediction was right, the draft helped", "value": confirm},
            "correct_topic": {
                "summary": "Correct the topic",
                "value": {"request_id": REQUEST_ID, "true_topic": other_topic, "comment": "Wrong queue."},
            },
            "new_topic": {
                "summary": "A category the model does not know yet",
                "value": {"request_id": REQUEST_ID, "true_topic": "badge_access", "new_topic": True},
            },
            "draft_only": {
                "summary": "Only say whether the draft helped",
                "value": {
                    "request_id": REQUEST_ID,
                    "draft_helpful": False,
                    "comment": "First step already done.",
                },
            },
        },
    }


def response_examples(
    topics: list[str], urgencies: list[str], model: dict[str, Any] | None
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Named response examples per (path, method, status)."""
    topics = topics or ["hardware", "network"]
    ref = {"name": (model or {}).get("name", "ticket_triage"), "version": (model or {}).get("version", "3")}
    routing = (model or {}).get("routing") or {}
    triage = _triage(topics, urgencies, REQUEST_ID, routing, model)
    second = {
        **_triage(topics[1:] + topics[:1], urgencies, "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", routing, model)
    }
    second["low_confidence"] = True
    second["topic_confidence"] = 0.41
    second["topic_tier"] = "review"
    second["needs_review"] = True
    passage = {
        "article_id": "kb-vpn-001",
        "title": "VPN: authentication failed",
        "heading": "Reset the VPN token",
        "text": "Open the self-service portal, choose 'Reset VPN token', then reconnect.",
        "score": 0.83,
    }
    model_example = {
        "name": ref["name"],
        "version": ref["version"],
        "aliases": ["champion"],
        "run_id": "4c1f0d2e9b8a4f7e8d6c5b4a3f2e1d0c",
        "created_at": "2026-11-30T09:12:44+00:00",
        "data_version": {"rows": "12840", "content_hash": "9f2c1ab0"},
        "metrics": {"topic_macro_f1": 0.91, "topic_accuracy": 0.93},
        "tags": {"data.rows": "12840", "metric.topic_macro_f1": "0.91"},
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "topics": topics,
        "topic_names": {t: readable_label(t) for t in topics},
        "urgencies": urgencies,
        "routing": routing,
        "routing_names": {
            name: {label: readable_label(label) for label in labels} for name, labels in routing.items()
        },
        "loaded_at": "2026-12-01T08:00:03.512000Z",
        "kb_version": "20261201T080000Z",
    }
    if model is not None:
        model_example = {**model_example, **{k: v for k, v in model.items() if k in model_example}}
    return {
        ("/v1/triage", "post", "200"): {
            "one_ticket": {
                "summary": "One ticket",
                "value": {"request_id": CALL_ID, "model": ref, "results": [triage]},
            },
            "batch": {
                "summary": "A batch: one result per ticket, in order",
                "value": {"request_id": CALL_ID, "model": ref, "results": [triage, second]},
            },
        },
        ("/v1/answer", "post", "200"): {
            "extractive": {
                "summary": "No LLM configured: an extractive draft citing the passages",
                "value": {
                    "request_id": CALL_ID,
                    "model": ref,
                    "triage": triage,
                    "kb_version": "20261201T080000Z",
                    "passages": [passage],
                    "draft": {
                        "text": "Open the self-service portal, choose 'Reset VPN token', then reconnect. [kb-vpn-001]",
                        "mode": "extractive",
                        "citations": ["kb-vpn-001"],
                        "model": None,
                        "fallback_reason": "no LLM endpoint configured",
                    },
                },
            }
        },
        ("/v1/feedback", "post", "200"): {
            "stored": {
                "summary": "Stored",
                "value": {
                    "request_id": REQUEST_ID,
                    "created_at": "2026-12-01T10:02:11.120000Z",
                    "updated_at": "2026-12-01T10:02:11.120000Z",
                    "updated": False,
                },
            }
        },
        ("/v1/feedback", "post", "202"): {
            "queued": {
                "summary": "Queued behind its prediction",
                "value": {
                    "request_id": REQUEST_ID,
                    "status": "queued",
                    "detail": "the prediction is not stored yet; written behind it",
                },
            }
        },
        ("/v1/model", "get", "200"): {"champion": {"summary": "The champion", "value": model_example}},
        ("/v1/predictions/recent", "get", "200"): {
            "queue": {
                "summary": "Needing review first",
                "value": {
                    "predictions": [
                        {
                            "request_id": REQUEST_ID,
                            "created_at": "2026-12-01T10:01:58.402000Z",
                            "endpoint": "answer",
                            "text": TICKET["text"],
                            "text_chars": len(TICKET["text"]),
                            "channel": "email",
                            "topic": topics[0],
                            "topic_name": triage["topic_name"],
                            "topic_confidence": 0.41,
                            "urgency": urgencies[-1] if urgencies else None,
                            "urgency_confidence": 0.55 if urgencies else None,
                            "low_confidence": True,
                            "model_version": ref["version"],
                            "needs_review": True,
                            "out_of_scope": False,
                            "escalated": False,
                            "escalation_rule": None,
                            "served_urgency": urgencies[-1] if urgencies else None,
                            "topic_tier": "review",
                            "urgency_tier": "suggest" if urgencies else None,
                            "routing": {
                                name: {"label": r["label"], "confidence": r["confidence"], "tier": r["tier"]}
                                for name, r in triage["routing"].items()
                            },
                            "reviewed": False,
                        }
                    ]
                },
            }
        },
        ("/v1/incidents", "get", "200"): {
            "one_incident": {
                "summary": "A VPN outage reported by 41 people",
                "value": {
                    "incidents": [
                        {
                            "incident_id": "inc-20261201-0902-3fa9c1",
                            "detected_at": "2026-12-01T09:30:04.118000Z",
                            "first_seen": "2026-12-01T09:02:13Z",
                            "last_seen": "2026-12-01T09:21:48Z",
                            "size": 41,
                            "baseline_per_window": 0.42,
                            "top_terms": ["vpn", "connect", "connection", "down"],
                            "examples": [
                                {
                                    "id": "outage-3-17",
                                    "text": "VPN down. The VPN stopped working a few minutes ago.",
                                }
                            ],
                            "departments": {"Finance": 9, "Sales": 7},
                            "channels": {"email": 15, "chat": 12},
                            "predictions": 3,
                            "run_id": "8f0c2d1e-5b7a-4c3e-9d21-6a4b0e7f1c55",
                            "run_url": "http://127.0.0.1:3000/runs/8f0c2d1e-5b7a-4c3e-9d21-6a4b0e7f1c55",
                        }
                    ]
                },
            }
        },
        ("/v1/kb-gaps", "get", "200"): {
            "gaps": {
                "summary": "The largest gap first",
                "value": {
                    "computed_at": "2026-12-01T06:00:12.551000Z",
                    "run_id": "2b9e7a40-1c3d-4f8e-a6b2-0d5c9e3f7a18",
                    "run_url": "http://127.0.0.1:3000/runs/2b9e7a40-1c3d-4f8e-a6b2-0d5c9e3f7a18",
                    "gaps": [
                        {
                            "rank": 1,
                            "size": 38,
                            "trend": 0.61,
                            "mean_kb_score": 0.31,
                            "shortfall": 5.32,
                            "title_terms": ["meeting", "room", "projector", "screen"],
                            "examples": [
                                {
                                    "id": "syn-42-base-1207",
                                    "kb_score": 0.22,
                                    "text": "The projector in room 4B shows no signal.",
                                }
                            ],
                            "unhelpful_drafts": 2,
                            "incident_ids": [],
                        }
                    ],
                },
            }
        },
        ("/healthz", "get", "200"): {"ok": {"summary": "Alive", "value": {"status": "ok"}}},
        ("/readyz", "get", "200"): {
            "ready": {
                "summary": "Ready",
                "value": {
                    "ready": True,
                    "degraded": False,
                    "checks": {"model": True, "kb": True, "database": True},
                    "model_version": ref["version"],
                    "kb_version": "20261201T080000Z",
                    "errors": {},
                },
            }
        },
        ("/readyz", "get", "503"): {
            "no_model": {
                "summary": "No model registered yet",
                "value": {
                    "ready": False,
                    "degraded": False,
                    "checks": {"model": False, "kb": True, "database": True},
                    "model_version": None,
                    "kb_version": "20261201T080000Z",
                    "errors": {"model": "no version of 'ticket_triage' has the alias 'champion'"},
                },
            }
        },
    }


def apply_examples(
    spec: dict[str, Any],
    topics: list[str],
    urgencies: list[str],
    model: dict[str, Any] | None,
    max_text_chars: int,
) -> None:
    """Write the examples into the document's request bodies and responses (in place)."""
    for (path, method), examples in request_examples(topics, urgencies).items():
        operation = spec["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        operation["requestBody"]["content"]["application/json"]["examples"] = deepcopy(examples)
    for (path, method, code), examples in response_examples(topics, urgencies, model).items():
        operation = spec["paths"].get(path, {}).get(method)
        if operation is None or code not in operation["responses"]:
            continue
        content = operation["responses"][code].setdefault("content", {}).setdefault("application/json", {})
        content["examples"] = deepcopy(examples)
    # 422s as each route really words them: the deployment's text limit, the model's topics.
    too_long = deepcopy(ERROR_EXAMPLES[422]["text_too_long"])
    item = too_long["value"]["detail"][0]
    item["msg"] = item["msg"].replace("8000", str(max_text_chars))
    item["ctx"] = {"max_length": max_text_chars}
    allowed = ", ".join(topics or ["hardware", "network"])
    unknown_topic = {
        "summary": "A topic the served model does not know (without new_topic)",
        "value": {
            "detail": [
                {
                    "type": "enum",
                    "loc": ["body", "true_topic"],
                    "msg": f"Input should be one of: {allowed}",
                    "ctx": {"expected": allowed},
                }
            ]
        },
    }
    for path, method, examples in (
        (
            "/v1/triage",
            "post",
            {"missing_text": ERROR_EXAMPLES[422]["missing_text"], "text_too_long": too_long},
        ),
        (
            "/v1/answer",
            "post",
            {"missing_text": ERROR_EXAMPLES[422]["missing_text"], "text_too_long": too_long},
        ),
        ("/v1/feedback", "post", {"unknown_topic": unknown_topic}),
        ("/v1/predictions/recent", "get", {"limit_too_small": LIMIT_TOO_SMALL}),
        ("/v1/incidents", "get", {"limit_too_small": LIMIT_TOO_SMALL}),
        ("/v1/kb-gaps", "get", {"limit_too_small": LIMIT_TOO_SMALL}),
    ):
        operation = spec["paths"].get(path, {}).get(method)
        if operation is not None and "422" in operation["responses"]:
            operation["responses"]["422"]["content"]["application/json"]["examples"] = deepcopy(examples)
    for path in ("/v1/predictions/recent", "/v1/incidents", "/v1/kb-gaps"):
        operation = spec["paths"].get(path, {}).get("get")
        if operation is not None:
            operation["responses"]["503"]["content"]["application/json"]["examples"] = {
                "no_database": {
                    "summary": "Database unreachable",
                    "value": {"detail": "the database is unavailable"},
                }
            }
    for path, method, name in (
        ("/v1/feedback", "post", "unknown_request_id"),
        ("/reports/{path}", "get", "unknown_report"),
    ):
        operation = spec["paths"].get(path, {}).get(method)
        if operation is not None and "404" in operation["responses"]:
            examples = operation["responses"]["404"]["content"]["application/json"]["examples"]
            operation["responses"]["404"]["content"]["application/json"]["examples"] = {
                name: deepcopy(examples[name])
            }
    # FastAPI adds a generic 422 to every route with parameters; /reports/{path} accepts any path
    # (a bad one is a 404), so a 422 there would be documentation of an answer that never comes.
    for operations in spec["paths"].values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response and "examples" not in response.get("content", {}).get("application/json", {}):
                del operation["responses"]["422"]
    schemas = spec.get("components", {}).get("schemas", {})
    if "HTTPValidationError" in schemas and "HTTPValidationError" not in str(spec["paths"]):
        schemas.pop("HTTPValidationError")
        schemas.pop("ValidationError", None)
