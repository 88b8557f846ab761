"""Alerts for on-call: a Slack-compatible webhook when ``ALERT_WEBHOOK_URL`` is set, always the log,
and a row in ``ops.alerts`` so the history outlives the chat channel."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from ticket_assets.services.postgres import connect

log = logging.getLogger("ticketops.alerts")


@dataclass(frozen=True)
class Alert:
    title: str
    body: str
    severity: str = "warning"  # info | warning | critical
    source: str = "ticketops"
    dedup_key: str | None = None

    def slack_payload(self) -> dict:
        icon = {"critical": ":rotating_light:", "warning": ":warning:"}.get(
            self.severity, ":information_source:"
        )
        return {"text": f"{icon} *{self.title}*\n{self.body}"}


def send_alert(
    alert: Alert, webhook_url: str | None, database_url: str | None, *, timeout_s: float = 5.0
) -> bool:
    """Deliver an alert; never raises, because a broken webhook must not fail the run that noticed a problem."""
    log.warning("ALERT [%s] %s: %s", alert.severity, alert.title, alert.body)
    delivered = False
    if webhook_url:
        for attempt in range(2):
            try:
                response = httpx.post(webhook_url, json=alert.slack_payload(), timeout=timeout_s)
                response.raise_for_status()
                delivered = True
                break
            except httpx.HTTPError as exc:
                log.error("alert webhook failed (attempt %d): %s", attempt + 1, type(exc).__name__)
    if database_url:
        try:
            with connect(database_url, attempts=2) as conn:
                conn.execute(
                    "insert into ops.alerts (severity, source, title, body, delivered, dedup_key)"
                    " values (%s, %s, %s, %s, %s, %s)",
                    (alert.severity, alert.source, alert.title, alert.body, delivered, alert.dedup_key),
                )
                conn.commit()
        except Exception as exc:  # noqa: BLE001 - recording the alert is best effort
            log.error("could not record alert in ops.alerts: %s", exc)
    return delivered
