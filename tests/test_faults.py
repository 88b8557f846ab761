"""Fault injection against real processes: uvicorn subprocesses on free ports, a real PostgreSQL
(reached through a TCP proxy that the tests cut to simulate an outage), real Dagster runs.

Each test states a promise of the platform: an acknowledged prediction or feedback survives SIGKILL
and SIGTERM during an outage, one bad row costs one dead letter, a database outage does not cost a
single triage, and two training runs at once promote once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg
import pytest

from serving.prediction_log import to_record
from tests.support.api import (
    API_KEYS,
    REPO_ROOT,
    ApiWorld,
    count_predictions,
    free_port,
    sample_prediction_row,
    wait_for,
)
from ticket_assets.services.postgres import connection_params

HEADERS = {"X-API-Key": API_KEYS[0]}


# A TCP proxy in front of PostgreSQL: cut() is the outage (open connections die, new ones are refused).
class PostgresProxy:
    def __init__(self, server_url: str) -> None:
        params = connection_params(server_url)
        if params["host"].startswith("/"):  # embedded server: unix socket only
            self._target: tuple[int, object] = (
                socket.AF_UNIX,
                f"{params['host']}/.s.PGSQL.{params['port']}",
            )
        else:
            self._target = (socket.AF_INET, (params["host"], int(params["port"])))
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for sock in self._sockets:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            family, address = self._target
            upstream = socket.socket(family)
            try:
                upstream.connect(address)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture()
def proxied_db(fresh_db: str, pg_server_url: str) -> Iterator[tuple[str, str, PostgresProxy]]:
    """(direct URL, URL through the proxy, proxy) for a database of its own."""
    proxy = PostgresProxy(pg_server_url)
    yield fresh_db, proxy.url(connection_params(fresh_db)["dbname"]), proxy
    proxy.cut()


# The API as a real process ----------------------------------------------------------------------
class ApiProcess:
    def __init__(self, world: ApiWorld, database_url: str, spool_dir: Path, log_path: Path) -> None:
        settings = world.settings
        self.port = free_port()
        self.log_path = log_path
        self.env = {
            **os.environ,
            "TICKETOPS_DATA_DIR": str(settings.data_dir),
            "TICKETOPS_SPOOL_DIR": str(spool_dir),
            "DATABASE_URL": database_url,
            "MLFLOW_TRACKING_URI": settings.resolved_mlflow_uri,
            "TICKETOPS_MODEL_NAME": settings.model_name,
            "TICKETOPS_MODEL_CACHE_DIR": str(settings.resolved_model_cache_dir),
            "TICKETOPS_API_KEYS": ",".join(API_KEYS),
            "TICKETOPS_LOG_FLUSH_INTERVAL_S": "0.1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> ApiProcess:
        command = [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited at start:\n{self.log_path.read_text()[-3000:]}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"API not ready in {timeout_s}s:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout_s: float = 40.0) -> float:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout_s)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()


@contextmanager
def api_process(world: ApiWorld, database_url: str, spool_dir: Path, log_path: Path) -> Iterator[ApiProcess]:
    api = ApiProcess(world, database_url, spool_dir, log_path).start()
    try:
        yield api
    finally:
        api.stop()


def _count(url: str, table: str, ids: list[str]) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"select count(*) from {table} where request_id = any(%s::uuid[])", (ids,)
        ).fetchone()[0]


def _eventually(predicate, timeout_s: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


async def _load(
    base_url: str,
    texts: list[str],
    clients: int,
    stop: asyncio.Event,
    *,
    feedback_every: int = 0,
) -> tuple[list[str], list[str], list[int]]:
    """Triage until stopped; returns acknowledged prediction ids, acknowledged feedback ids, errors."""
    acked: list[str] = []
    feedback_acked: list[str] = []
    errors: list[int] = []

    async def one_client(client: httpx.AsyncClient, offset: int) -> None:
        i = offset
        while not stop.is_set():
            try:
                response = await client.post("/v1/triage", json={"ticket": {"text": texts[i % len(texts)]}})
            except httpx.HTTPError:
                return  # the server died under us: whatever was not answered was not acknowledged
            if response.status_code != 200:
                errors.append(response.status_code)
                continue
            request_id = response.json()["results"][0]["request_id"]
            acked.append(request_id)
            i += clients
            if feedback_every and i % feedback_every == 0:
                try:
                    fb = await client.post(
                        "/v1/feedback", json={"request_id": request_id, "draft_helpful": True}
                    )
                except httpx.HTTPError:
                    return
                if fb.status_code in (200, 202):
                    feedback_acked.append(request_id)
                else:
                    errors.append(fb.status_code)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, headers=HEADERS, timeout=30, limits=limits) as client:
        await asyncio.gather(*(one_client(client, n) for n in range(clients)))
    return acked, feedback_acked, errors


# Tests ------------------------------------------------------------------------------------------
def test_sigkill_under_32_client_load_loses_no_acknowledged_row(
    world: ApiWorld, fresh_db: str, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    acked: list[str] = []
    feedback_acked: list[str] = []
    rounds = 3

    async def load_then_kill(api: ApiProcess) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(_load(api.base_url, world.holdout_texts, 32, stop, feedback_every=7))
        await asyncio.sleep(3.0)
        await asyncio.to_thread(api.kill)  # mid-load: requests in flight, rows buffered and spooled
        stop.set()
        ids, feedback_ids, errors = await task
        assert not errors, errors
        acked.extend(ids)
        feedback_acked.extend(feedback_ids)

    for n in range(rounds):
        api = ApiProcess(world, fresh_db, spool, tmp_path / f"api-{n}.log").start()
        asyncio.run(load_then_kill(api))

    with api_process(world, fresh_db, spool, tmp_path / "api-final.log"):  # replays the last round's spool
        assert _eventually(lambda: count_predictions(fresh_db, acked) == len(set(acked)))
        assert _eventually(
            lambda: _count(fresh_db, "ops.feedback", feedback_acked) == len(set(feedback_acked))
        )

    assert len(acked) > 300 and feedback_acked
    print(
        f"\nSIGKILL x{rounds}: {len(acked)} acknowledged predictions, {len(feedback_acked)} feedback, 0 lost"
    )


def test_a_poison_row_in_the_spool_costs_one_dead_letter_and_the_rest_is_written(
    world: ApiWorld, fresh_db: str, tmp_path: Path
) -> None:
    rows = [sample_prediction_row() for _ in range(40)]
    # Left by a server that acknowledged a NUL byte before validation refused them.
    rows[13] = replace(rows[13], channel="e\x00mail")
    segment = tmp_path / "spool" / "slot-0" / "000000000000.jsonl"
    segment.parent.mkdir(parents=True)
    segment.write_text("".join(json.dumps(to_record(row)) + "\n" for row in rows))
    ids = [str(row.request_id) for row in rows]

    with api_process(world, fresh_db, tmp_path / "spool", tmp_path / "api.log") as api:
        assert _eventually(lambda: count_predictions(fresh_db, ids) == 39, 30)
        triaged = httpx.post(
            f"{api.base_url}/v1/triage", json={"ticket": {"text": "printer jam"}}, headers=HEADERS
        ).json()["results"][0]["request_id"]
        assert _eventually(lambda: count_predictions(fresh_db, [triaged]) == 1, 30)  # nothing stalls
        metrics = httpx.get(f"{api.base_url}/metrics").text

    with psycopg.connect(fresh_db) as conn:
        dead = conn.execute("select request_id::text, error from ops.predictions_rejected").fetchall()
    assert [d[0] for d in dead] == [ids[13]]
    assert "NUL" in dead[0][1]
    assert 'ticketops_prediction_log_dead_letters_total{kind="prediction"} 1.0' in metrics
    assert list((tmp_path / "spool").glob("slot-*/*.jsonl")) == []  # released and cleaned up


def test_an_outage_under_load_then_sigterm_keeps_triage_up_and_replays_everything(
    world: ApiWorld, proxied_db: tuple[str, str, PostgresProxy], tmp_path: Path
) -> None:
    direct, via_proxy, proxy = proxied_db
    spool = tmp_path / "spool"
    readiness: list[tuple[int, bool]] = []

    async def scenario(api: ApiProcess) -> tuple[list[str], list[str], list[int], float]:
        stop = asyncio.Event()
        load = asyncio.create_task(_load(api.base_url, world.holdout_texts, 16, stop, feedback_every=5))

        async def probe() -> None:
            async with httpx.AsyncClient(base_url=api.base_url, timeout=5) as client:
                while not stop.is_set():
                    response = await client.get("/readyz")
                    readiness.append((response.status_code, response.json()["degraded"]))
                    await asyncio.sleep(0.25)

        probing = asyncio.create_task(probe())
        await asyncio.sleep(2.0)
        proxy.cut()  # the database goes away under load
        await asyncio.sleep(8.0)
        stop.set()
        ids, feedback_ids, errors = await load
        await probing
        # SIGTERM while the database is still down: rows must stay in the spool, not be dropped.
        shutdown_s = await asyncio.to_thread(api.terminate)
        return ids, feedback_ids, errors, shutdown_s

    api = ApiProcess(world, via_proxy, spool, tmp_path / "api-1.log").start()
    acked, feedback_acked, errors, shutdown_s = asyncio.run(scenario(api))
    log = (tmp_path / "api-1.log").read_text()

    assert errors == []  # 0 failed triage (and feedback answered 200 or 202) during the outage
    assert {status for status, _ in readiness} == {200}
    assert any(degraded for _, degraded in readiness) and not readiness[0][1]
    assert "rows stay in the spool" in log and "were not written" not in log
    assert count_predictions(direct, acked) < len(acked)  # the outage really held rows back

    proxy.restore()
    with api_process(world, via_proxy, spool, tmp_path / "api-2.log"):
        assert _eventually(lambda: count_predictions(direct, acked) == len(acked))
        assert _eventually(lambda: _count(direct, "ops.feedback", feedback_acked) == len(set(feedback_acked)))
    print(
        f"\noutage + SIGTERM: {len(acked)} predictions and {len(feedback_acked)} feedback acknowledged, "
        f"0 errors, readiness 200 x{len(readiness)}, shutdown {shutdown_s:.1f}s, all replayed"
    )


def test_two_concurrent_materialisations_promote_once(
    platform_env: Path, fresh_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `ticketops materialize` of the training assets at once on one data directory."""
    import dagster as dg

    from ticket_assets.ml import registry
    from ticket_assets.runner import materialize
    from ticket_assets.services.environment import prepare_environment
    from ticket_assets.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", fresh_db)
    monkeypatch.setenv("TICKETOPS_TRAIN_QUICK", "1")
    monkeypatch.setenv("TICKETOPS_MODEL_NAME", f"race-{uuid.uuid4().hex[:6]}")
    settings = prepare_environment(get_settings())
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    config = {**quiet, "ops": {"raw__tickets": {"config": {"synthetic_tickets": 400, "seed": 3}}}}
    with dg.DagsterInstance.get() as instance:
        upstream = materialize(
            "group:ingest or group:dbt or key:ticket_embeddings", instance=instance, run_config=config
        )
    assert upstream.success, upstream.failed_steps

    command = [
        str(Path(sys.executable).parent / "ticketops"),
        "materialize",
        "-s",
        "key:ticket_classifier or key:champion_model",
    ]
    runs = [
        subprocess.Popen(
            command, cwd=REPO_ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600)[0].decode() for run in runs]

    with psycopg.connect(fresh_db) as conn:
        moves = conn.execute(
            "select from_version, to_version, actor from ops.model_alias_events "
            "where model_name = %s and alias = 'champion'",
            (get_settings().model_name,),
        ).fetchall()
    assert [run.returncode for run in runs] == [0, 0], "\n=====\n".join(outputs)
    assert len(moves) == 1, moves  # exactly one promotion
    assert registry.get_alias_version(settings.model_name, registry.CHAMPION, get_settings()) == str(
        moves[0][1]
    )


def _dbt_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and pid <> pg_backend_pid() and (application_name = 'dbt' or query like '%%\"app\": \"dbt\"%%')"
        ).fetchone()[0]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_a_run_stopped_while_dbt_runs_leaves_no_dbt_behind_and_the_rerun_builds_the_right_marts(
    platform_env: Path, fresh_db: str, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    """`ticketops materialize` killed (SIGKILL) or interrupted (SIGINT, Ctrl-C) while dbt runs in its
    process: nothing of dbt outlives it (a `dbt` subprocess outlives a SIGKILL), an interrupt stops
    dbt at once instead of letting it finish the build, its transactions roll back, and the next
    run builds the marts the raw tickets call for."""
    from tests.test_dbt_project import assert_marts_match_raw
    from ticket_assets.sources.store import ingest_synthetic

    monkeypatch.setenv("DATABASE_URL", fresh_db)
    command = [
        str(Path(sys.executable).parent / "ticketops"),
        "materialize",
        "-s",
        "group:ingest or group:dbt",
    ]

    def materialize() -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ), capture_output=True, timeout=600)

    ingest_synthetic(fresh_db, n=1500, seed=4)
    first = materialize()
    assert first.returncode == 0, first.stdout.decode()[-3000:]

    ingest_synthetic(fresh_db, n=400, seed=5)  # what the killed run is building
    run = subprocess.Popen(command, cwd=REPO_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while _dbt_sessions(fresh_db) == 0:
        assert run.poll() is None and time.monotonic() < deadline, "dbt never connected"
        time.sleep(0.01)
    run.send_signal(sig)  # the process alone, not its group
    stopped = time.monotonic()
    assert run.wait(60) != 0
    assert time.monotonic() - stopped < 15  # dagster-dbt would wait up to 25 s for dbt to stop
    assert wait_for(lambda: _dbt_sessions(fresh_db) == 0, timeout_s=15), "a dbt session outlived the run"
    if sig == signal.SIGINT:  # dbt itself took the interrupt: it cancelled its queries and stopped
        from ticket_assets.core.paths import DBT_PROJECT_DIR

        newest = max(
            (DBT_PROJECT_DIR / "target").glob("ticket_dbt_models-*"), key=lambda p: p.stat().st_mtime
        )
        log = (newest / "dbt.log").read_text()
        assert '"keyboard_interrupt": true' in log or "KeyboardInterrupt" in log

    rerun = materialize()
    assert rerun.returncode == 0, rerun.stdout.decode()[-3000:]
    assert_marts_match_raw(fresh_db)
