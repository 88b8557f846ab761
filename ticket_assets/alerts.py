"""Alerts for on-call: a Slack-compatible webhook when ``ALERT_WEBHOOK_URL`` is set, always the log,
and a row in ``ops.alerts`` so the history outlives the chat channel.

An alert with a ``dedup_key`` is sent once: the row is claimed first (unique key), and only the
process that claimed it calls the webhook, so a retried run or a second sensor tick stays quiet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ticket_assets.services.postgres import connect

log = logging.getLogger("ticketops.alerts")


@dataclass(frozen=True)
class Alert:
    title: str
    body: str
    severity: str = "warning"  # info | warning | critical
    source: str = "ticketops"
    dedup_key: str | None = None
    url: str | None = None  # the run, report or model version to open

    def slack_payload(self) -> dict:
        icon = {"critical": ":rotating_light:", "warning": ":warning:"}.get(
            self.severity, ":information_source:"
        )
        link = f"\n<{self.url}|Open>" if self.url else ""
        payload: dict = {"text": f"{icon} *{self.title}*\n{self.body}{link}"}
        if self.url:
            payload["url"] = self.url
        if self.dedup_key:
            payload["dedup_key"] = self.dedup_key
        return payload


_CLAIM = """
insert into ops.alerts (severity, source, title, body, delivered, dedup_key, url)
values (%s, %s, %s, %s, false, %s, %s)
on conflict (dedup_key) where dedup_key is not null do nothing
returning id
"""


def _claim(alert: Alert, database_url: str) -> int | None | bool:
    """The new row's id; False when the dedup key was sent before; None when the store is down."""
    try:
        with connect(database_url, attempts=2) as conn:
            row = conn.execute(
                _CLAIM,
                (alert.severity, alert.source, alert.title, alert.body, alert.dedup_key, alert.url),
            ).fetchone()
            conn.commit()
    except Exception as exc:  # noqa: BLE001 - recording the alert is best effort
        log.error("could not record alert in ops.alerts: %s", exc)
        return None
    return False if row is None else int(row[0])


def _mark_delivered(alert_id: int, database_url: str) -> None:
    try:
        with connect(database_url, attempts=2) as conn:
            conn.execute("update ops.alerts set delivered = true where id = %s", (alert_id,))
            conn.commit()
    except Exception as exc:  # noqa: BLE001
        log.error("could not mark alert %s delivered: %s", alert_id, exc)


def send_alert(
    alert: Alert, webhook_url: str | None, database_url: str | None, *, timeout_s: float = 5.0
) -> bool:
    """Deliver an alert once; never raises, because a broken webhook must not fail the run that
    noticed a problem. Returns whether the webhook took it (False for a repeat of a dedup key)."""
    alert_id = _claim(alert, database_url) if database_url else None
    if alert_id is False:
        log.info("alert %r already sent (dedup key %s)", alert.title, alert.dedup_key)
        return False
    log.warning("ALERT [%s] %s: %s", alert.severity, alert.title, alert.body)
    delivered = False
    if webhook_url:
        import httpx  # here: a fifth of a second to import, only needed with a webhook

        for attempt in range(2):
            try:
                response = httpx.post(webhook_url, json=alert.slack_payload(), timeout=timeout_s)
                response.raise_for_status()
                delivered = True
                break
            except httpx.HTTPError as exc:
                log.error("alert webhook failed (attempt %d): %s", attempt + 1, type(exc).__name__)
    if delivered and alert_id is not None and database_url:
        _mark_delivered(alert_id, database_url)
    return delivered
