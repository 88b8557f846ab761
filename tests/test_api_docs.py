"""/docs and /redoc without a network, and every documented example checked twice: against the
schema it documents, and against what the real server answers for the same call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from serving.app import create_app
from serving.examples import REQUEST_ID
from tests.support.api import API_KEYS, ApiWorld, wait_for


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # `#/components/...` references resolve inside the root schema: carry the components along.
    return Draft202012Validator({"allOf": [schema], "components": spec["components"]})


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _examples(spec: dict[str, Any], path: str, method: str, code: str) -> dict[str, Any]:
    content = spec["paths"][path][method]["responses"][code]["content"]
    media = content.get("application/json") or content["text/plain"]
    return {name: example["value"] for name, example in media["examples"].items()}


def _assert_documented(spec: dict[str, Any], path: str, method: str, response: Any) -> None:
    """The real answer matches the schema documented for its status code."""
    documented = spec["paths"][path][method]["responses"][str(response.status_code)]
    if "application/json" in documented.get("content", {}):
        schema = documented["content"]["application/json"]["schema"]
        errors = [e.message for e in _validator(spec, schema).iter_errors(response.json())]
        assert not errors, (path, response.status_code, errors)
    else:
        assert response.headers["content-type"].startswith("text/plain"), response.headers


def _diff(example: Any, real: Any, where: str = "") -> list[str]:
    """Where an example and a real response differ in shape (for the failure message)."""
    if isinstance(example, dict) and isinstance(real, dict):
        if example.keys() != real.keys():
            return [f"{where or '.'}: keys {sorted(example.keys() ^ real.keys())}"]
        return [d for k in example for d in _diff(example[k], real[k], f"{where}.{k}")]
    return [] if _same_shape(example, real) else [f"{where}: {example!r} vs {real!r}"]


def _same_shape(example: Any, real: Any) -> bool:
    """Same JSON types and the same keys all the way down (values may differ)."""
    if isinstance(example, dict) and isinstance(real, dict):
        return example.keys() == real.keys() and all(_same_shape(example[k], real[k]) for k in example)
    if isinstance(example, list) and isinstance(real, list):
        return all(_same_shape(example[0], item) for item in real) if example and real else True
    if example is None or real is None:
        return True  # nullable fields: either side may be null
    if isinstance(example, int | float) and isinstance(real, int | float):
        return not isinstance(example, bool) and not isinstance(real, bool) or type(example) is type(real)
    return type(example) is type(real)


# Offline docs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_every_asset_from_the_server_itself(client: TestClient, page: str) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assert "cdn." not in html.text and "fonts.googleapis" not in html.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert assets, html.text
    scripts = [url for url in assets if url.endswith(".js")]
    assert scripts
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        asset = client.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert len(asset.content) > 100_000, f"{url} is not the real bundle"
    # The document the page renders is reachable without a key.
    assert client.get("/openapi.json", headers={"X-API-Key": ""}).status_code == 200


# Examples against the schema ---------------------------------------------------------------------
def test_every_endpoint_and_error_has_examples_that_fit_its_schema(spec: dict[str, Any]) -> None:
    checked = 0
    for path, method, operation in _operations(spec):
        body = operation.get("requestBody")
        if body:
            media = body["content"]["application/json"]
            assert media.get("examples"), f"{method} {path}: no request example"
            validator = _validator(spec, media["schema"])
            for name, example in media["examples"].items():
                errors = [e.message for e in validator.iter_errors(example["value"])]
                assert not errors, (path, name, errors)
                checked += 1
        for code, response in operation["responses"].items():
            content = response.get("content", {})
            if "application/json" not in content:
                if code == "413":
                    assert content["text/plain"]["examples"], path
                continue
            media = content["application/json"]
            assert media.get("examples"), f"{method} {path} {code}: no example"
            validator = _validator(spec, media["schema"])
            for name, example in media["examples"].items():
                errors = [e.message for e in validator.iter_errors(example["value"])]
                assert not errors, (path, code, name, errors)
                checked += 1
    assert checked >= 25
    # Errors are documented with their real shapes: a list for 422, a sentence otherwise.
    triage = spec["paths"]["/v1/triage"]["post"]["responses"]
    assert isinstance(_examples(spec, "/v1/triage", "post", "422")["missing_text"]["detail"], list)
    assert isinstance(_examples(spec, "/v1/triage", "post", "401")["no_key"]["detail"], str)
    assert "string" not in str(triage["200"]["content"]["application/json"]["examples"])


def test_examples_use_the_served_models_labels(client: TestClient, spec: dict[str, Any]) -> None:
    topics = client.get("/v1/model").json()["topics"]
    feedback = spec["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]
    assert feedback["examples"]["accept"]["value"]["true_topic"] in topics
    assert feedback["examples"]["correct_topic"]["value"]["true_topic"] in topics
    answer = _examples(spec, "/v1/triage", "post", "200")["one_ticket"]
    assert set(answer["results"][0]["topic_probabilities"]) == set(topics)


# Examples against real calls ---------------------------------------------------------------------
def test_request_examples_succeed_and_answer_like_the_response_examples(
    client: TestClient, spec: dict[str, Any]
) -> None:
    for path in ("/v1/triage", "/v1/answer"):
        requests = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        responses = _examples(spec, path, "post", "200")
        for name, example in requests.items():
            response = client.post(path, json=example["value"])
            assert response.status_code == 200, (path, name, response.text)
            _assert_documented(spec, path, "post", response)
            expected = responses.get(name) or next(iter(responses.values()))
            assert _same_shape(expected, response.json()), (path, name, response.json())

    triaged = client.post("/v1/triage", json={"ticket": {"text": "Printer on floor 3 jams on every job."}})
    request_id = triaged.json()["results"][0]["request_id"]
    assert wait_for(lambda: client.app.state.serving.log_writer.queue_size == 0)
    requests = spec["paths"]["/v1/feedback"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    for name, example in requests.items():
        response = client.post("/v1/feedback", json={**example["value"], "request_id": request_id})
        assert response.status_code in (200, 202), (name, response.text)
        _assert_documented(spec, "/v1/feedback", "post", response)
        expected = _examples(spec, "/v1/feedback", "post", str(response.status_code))
        assert _same_shape(next(iter(expected.values())), response.json()), (name, response.json())

    for path in (
        "/v1/model",
        "/v1/predictions/recent",
        "/v1/incidents",
        "/v1/kb-gaps",
        "/healthz",
        "/readyz",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_documented(spec, path, "get", response)
        [expected] = _examples(spec, path, "get", "200").values()
        assert _same_shape(expected, response.json()), (path, _diff(expected, response.json()))


def test_error_examples_are_what_the_server_answers(
    client: TestClient, spec: dict[str, Any], world: ApiWorld
) -> None:
    def check(path: str, method: str, response: Any, example: str) -> None:
        code = str(response.status_code)
        _assert_documented(spec, path, method, response)
        documented = _examples(spec, path, method, code)[example]
        real = response.text if code == "413" else response.json()
        assert real == documented, (path, code, real, documented)

    check("/v1/triage", "post", client.post("/v1/triage", json={"ticket": {}}), "missing_text")
    long_text = {"ticket": {"text": "a" * (world.settings.max_text_chars + 1)}}
    check("/v1/triage", "post", client.post("/v1/triage", json=long_text), "text_too_long")
    check("/v1/answer", "post", client.post("/v1/answer", json={"ticket": {}}), "missing_text")
    unknown = {"request_id": REQUEST_ID, "true_topic": "no_such_topic"}
    check("/v1/feedback", "post", client.post("/v1/feedback", json=unknown), "unknown_topic")
    check(
        "/v1/feedback",
        "post",
        client.post("/v1/feedback", json={"request_id": REQUEST_ID, "draft_helpful": True}),
        "unknown_request_id",
    )
    check("/reports/{path}", "get", client.get("/reports/drift/2026-01-01.html"), "unknown_report")
    check("/v1/model", "get", client.get("/v1/model", headers={"X-API-Key": "wrong"}), "no_key")
    check("/v1/predictions/recent", "get", client.get("/v1/predictions/recent?limit=0"), "limit_too_small")
    not_utf8 = b'{"ticket": {"text": "\xff\xfe"}}'
    headers = {"Content-Type": "application/json"}
    check("/v1/triage", "post", client.post("/v1/triage", content=not_utf8, headers=headers), "not_utf8")
    huge = b'{"ticket": {"text": "' + b"a" * world.settings.max_body_bytes + b'"}}'
    check("/v1/triage", "post", client.post("/v1/triage", content=huge, headers=headers), "too_large")

    # 503: a server whose registry has no such model.
    settings = world.settings.model_copy(update={"model_name": "not-registered"})
    with TestClient(create_app(settings), headers={"X-API-Key": API_KEYS[0]}) as empty:
        empty_spec = empty.get("/openapi.json").json()
        response = empty.get("/v1/model")
        assert response.status_code == 503
        _assert_documented(empty_spec, "/v1/model", "get", response)
        assert response.json() == _examples(empty_spec, "/v1/model", "get", "503")["no_model"]
        response = empty.post("/v1/triage", json={"ticket": {"text": "VPN down"}})
        assert response.json() == _examples(empty_spec, "/v1/triage", "post", "503")["no_model"]
