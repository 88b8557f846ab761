"""The agent console in a real browser (Debian's Chromium driven by Playwright) against a real
server, model, knowledge base and PostgreSQL; no request may leave 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from serving.app import create_app
from tests.support.api import API_KEYS, ApiWorld, ServerThread, running_server, stored_memory, wait_for

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which("chromium") is None,
    reason="no /usr/bin/chromium: install Debian's browser with `apt-get install -y chromium`",
)


@pytest.fixture(scope="module")
def world(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    """A platform of its own: the review queue shows only what these tests sent."""
    from tests.conftest import temporary_database
    from tests.support.api import _build_world
    from ticket_assets.services.migrations import migrate

    with temporary_database(pg_server_url, "ticketops_console") as url:
        migrate(url)
        yield _build_world(url, tmp_path_factory.mktemp("console-world"))


@pytest.fixture(scope="module")
def server(world: ApiWorld) -> Iterator[ServerThread]:
    with running_server(create_app(world.settings)) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Any, server: ServerThread) -> Iterator[Any]:
    context = browser.new_context()
    outside: list[str] = []

    def offline(route: Any) -> None:  # the network is "off": only the server itself answers
        if route.request.url.startswith(server.base_url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not outside, f"requests outside the server: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


def _feedback(world: ApiWorld, request_id: str) -> dict[str, Any] | None:
    with psycopg.connect(
        world.settings.database_url.get_secret_value(), row_factory=psycopg.rows.dict_row
    ) as conn:
        return conn.execute("select * from ops.feedback where request_id = %s", (request_id,)).fetchone()


def test_agent_triages_reads_the_draft_and_accepts_it(
    page: Any, server: ServerThread, world: ApiWorld
) -> None:
    page.goto(f"{server.base_url}/console")
    page.fill("#api-key", "not-a-key")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-error:has-text('refused')")

    page.fill("#api-key", API_KEYS[0])
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('ticketops.apiKey')") == API_KEYS[0]

    page.fill("#ticket-title", "VPN drops")
    page.fill("#ticket-text", world.holdout_texts[0])
    page.click("#triage-button")
    page.wait_for_selector("#result-panel:not([hidden]) [data-field=topic]")
    topic = page.text_content("[data-field=topic]")
    request_id = page.text_content("[data-field=request_id]")
    model = server.base_url  # the page shows what the API said: compare with a direct call
    import httpx

    served = httpx.get(f"{model}/v1/model", headers={"X-API-Key": API_KEYS[0]}).json()
    assert topic in served["topics"]
    # Every field of the triage result is rendered, including ones the page has no special case for.
    fields = set(page.eval_on_selector_all("#prediction dd", "nodes => nodes.map(n => n.dataset.field)"))
    assert {"topic", "topic_confidence", "urgency", "low_confidence", "similar", "request_id"} <= fields
    assert page.text_content("#draft-text").strip()
    citations = page.text_content("#citations")
    assert citations and citations != "none"
    assert page.locator("#passages li").count() >= 1

    page.click("#accept-button")
    page.wait_for_selector("#feedback-status:has-text('Feedback')")
    assert wait_for(lambda: _feedback(world, request_id) is not None)
    stored = _feedback(world, request_id)
    assert stored["true_topic"] == topic and stored["draft_helpful"] is True

    # The queue lists it as reviewed.
    page.click("#refresh-queue")
    row = page.locator(f"#queue tr[data-request-id='{request_id}']")
    row.wait_for()
    assert "reviewed" in (row.get_attribute("class") or "")


def test_agent_corrects_a_prediction_from_the_queue(page: Any, server: ServerThread, world: ApiWorld) -> None:
    import httpx

    headers = {"X-API-Key": API_KEYS[0]}
    triaged = httpx.post(
        f"{server.base_url}/v1/triage",
        json={"ticket": {"text": "The badge reader at the car park refuses my card since Monday."}},
        headers=headers,
    ).json()["results"][0]
    assert wait_for(
        lambda: any(
            p["request_id"] == triaged["request_id"]
            for p in httpx.get(f"{server.base_url}/v1/predictions/recent", headers=headers).json()[
                "predictions"
            ]
        )
    )
    topics = httpx.get(f"{server.base_url}/v1/model", headers=headers).json()["topics"]
    other = next(t for t in topics if t != triaged["topic"])

    page.goto(f"{server.base_url}/console")
    page.wait_for_selector("#key-panel:not([hidden])")  # no key yet: the page asks for one
    page.evaluate(f"sessionStorage.setItem('ticketops.apiKey', {API_KEYS[0]!r})")
    page.reload()
    page.wait_for_selector("#app:not([hidden])")
    row = page.locator(f"#queue tr[data-request-id='{triaged['request_id']}']")
    row.wait_for(timeout=15_000)
    row.locator("button").click()
    assert page.text_content("[data-field=request_id]") == triaged["request_id"]
    page.select_option("#true-topic", other)
    page.uncheck("#draft-helpful")
    page.fill("#comment", "belongs elsewhere")
    page.click("#correct-button")
    page.wait_for_selector("#feedback-status:has-text('Feedback')")
    stored = _feedback(world, triaged["request_id"])
    assert stored["true_topic"] == other and stored["draft_helpful"] is False
    assert stored["comment"] == "belongs elsewhere"


def test_swagger_ui_and_redoc_render_with_the_network_off(page: Any, server: ServerThread) -> None:
    page.goto(f"{server.base_url}/docs")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/triage"]')
    assert page.locator(".opblock").count() >= 7
    page.goto(f"{server.base_url}/redoc")
    page.wait_for_selector("h2:has-text('Classify tickets by topic and urgency')")


def test_console_shows_major_incidents_and_kb_gaps(page: Any, server: ServerThread, world: ApiWorld) -> None:
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from ticket_assets.memory.incidents import Incident
    from ticket_assets.memory.kb_gaps import Gap

    now = datetime.now(UTC)
    incident = Incident(
        incident_id=f"inc-{now:%Y%m%d-%H%M}-cons01",
        first_seen=now - timedelta(minutes=20),
        last_seen=now - timedelta(minutes=2),
        size=40,
        baseline_per_window=0.3,
        top_terms=["vpn", "connect", "down"],
        examples=[{"id": "outage-9-1", "text": "VPN down"}],
        departments={"Finance": 25, "Sales": 15},
        channels={"chat": 40},
        centroid=np.ones(384, dtype=np.float32) / np.sqrt(384),
    )
    gap = Gap(
        12,
        0.8,
        0.28,
        2.1,
        ["projector", "meeting", "room"],
        [{"id": "t", "kb_score": 0.2, "text": "No signal"}],
        0,
    )
    url = world.settings.database_url.get_secret_value()
    with stored_memory(url, [incident], [gap], "run-console", "run-gaps"):
        page.goto(f"{server.base_url}/console")
        page.wait_for_selector("#key-panel:not([hidden])")
        page.evaluate(f"sessionStorage.setItem('ticketops.apiKey', {API_KEYS[0]!r})")
        page.reload()
        item = page.locator(f"#incidents li[data-incident-id='{incident.incident_id}']")
        item.wait_for(timeout=15_000)
        assert "40 tickets: vpn, connect, down" in item.text_content()
        assert item.locator("a").get_attribute("href").endswith("/runs/run-console")
        page.wait_for_selector("#kb-gaps li:has-text('projector, meeting, room')")
