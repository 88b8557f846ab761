"""The embedding runtimes: ONNX (int8 and fp32) against the sentence-transformers reference.

The first test runs the runtimes in a subprocess that cannot open a network socket; when the
shared export cache is empty (a fresh CI machine) that subprocess also builds the export, so the
export is proven offline too. ``TICKETOPS_MODEL_CACHE_DIR`` overrides the cache location.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ticket_assets.core.paths import REPO_ROOT
from ticket_assets.ml.embed import (
    EMBEDDING_DIM,
    SPREAD_MIN_TEXTS,
    build_embedder,
    ensure_onnx_model,
    get_embedder,
    onnx_cache_dir,
)
from ticket_assets.settings import Settings
from ticket_assets.sources.synthetic import generate_tickets

HANDWRITTEN = [
    "vpn",
    "Printer on 3rd floor jammed again!!!",
    "Outlook keeps asking for my password after the update. I tried restarting, still the same.",
    "URGENT: payroll server down since 07:40, nobody in finance can log in. Error 0x80070005.",
    "Bonjour, mon écran reste noir après la mise à jour du pilote graphique. Merci de votre aide.",
    "Hallo, ich brauche Zugriff auf das Laufwerk \\\\fs01\\marketing für das neue Projekt.",
    "cant login to jira, says acount locked?? pls help asap 🙏",
    "Please install Python 3.11 and VS Code on laptop LT-4411 (ticket for new hire starting Monday).",
    "Traceback (most recent call last): File 'sync.py', line 12, in <module> ConnectionResetError",
    # Longer than 256 tokens: exercises truncation, and pads every shorter text in a shared batch.
    " ".join(
        ["Since Monday the shared mailbox for the support team stops syncing every afternoon;"]
        + ["we restarted Outlook, cleared the OST cache and re-added the account but it keeps failing."] * 20
    ),
]


def ticket_texts(n: int, seed: int) -> list[str]:
    tickets = generate_tickets(n, seed)
    return [f"{title}\n\n{body}" for title, body in zip(tickets["title"], tickets["body"], strict=True)]


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """The export is keyed by a hash of its inputs, so sessions can share it (as other tests do)."""
    configured = os.environ.get("TICKETOPS_MODEL_CACHE_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "ticketops-model-cache"


OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys

    _connect = socket.socket.connect

    def refuse_network(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise OSError(f"network access attempted: {address}")
        return _connect(sock, address)

    socket.socket.connect = refuse_network

    from ticket_assets.ml.embed import build_embedder
    from ticket_assets.settings import Settings

    settings = Settings(data_dir=sys.argv[1], model_cache_dir=sys.argv[2])
    text = "My VPN disconnects every few minutes since the update"
    vectors = {runtime: build_embedder(runtime, settings).encode([text])[0].tolist() for runtime in ("onnx", "torch")}
    print(json.dumps(vectors))
    """
)


@pytest.fixture(scope="session")
def offline_run(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Export (unless cached) and encode in a fresh process that cannot open a network socket."""
    home = tmp_path_factory.mktemp("offline-home")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(home / "hf"),  # no hub cache to fall back on
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "PYTHONPATH": str(REPO_ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, str(home / "data"), str(model_cache_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr[-3000:]}


@pytest.fixture(scope="session")
def embed_settings(
    offline_run: dict, model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("embed-data"), model_cache_dir=model_cache_dir)


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return HANDWRITTEN + ticket_texts(40, seed=7)


@pytest.fixture(scope="session")
def torch_vectors(embed_settings: Settings, texts: list[str]) -> np.ndarray:
    return build_embedder("torch", embed_settings).encode(texts, batch_size=16)


@pytest.fixture(scope="session")
def int8(embed_settings: Settings):
    return build_embedder("onnx", embed_settings)


@pytest.fixture(scope="session")
def fp32(embed_settings: Settings):
    return build_embedder("onnx-fp32", embed_settings)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_and_encoding_need_no_network(offline_run: dict, model_cache_dir: Path) -> None:
    assert offline_run["returncode"] == 0, offline_run["stderr"]
    vectors = json.loads(offline_run["stdout"].strip().splitlines()[-1])
    onnx_vector, torch_vector = np.array(vectors["onnx"]), np.array(vectors["torch"])
    assert onnx_vector.shape == torch_vector.shape == (EMBEDDING_DIM,)
    assert float(onnx_vector @ torch_vector) > 0.95
    export_dir = onnx_cache_dir(Settings(model_cache_dir=model_cache_dir))
    assert sorted(p.name for p in export_dir.glob("*.onnx")) == ["model-fp32.onnx", "model-int8.onnx"]


@pytest.mark.parametrize("batch_size", [64, 8])
def test_int8_matches_torch_reference(
    int8, texts: list[str], torch_vectors: np.ndarray, batch_size: int
) -> None:
    similarity = cosines(int8.encode(texts, batch_size=batch_size), torch_vectors)
    assert similarity.mean() >= 0.98, similarity
    assert similarity.min() >= 0.95, similarity


def test_fp32_export_is_exact_on_padded_mixed_length_batches(
    fp32, texts: list[str], torch_vectors: np.ndarray
) -> None:
    # 50 texts of 2 to 256 tokens in one batch: most rows are mostly padding.
    one_batch = fp32.encode(texts, batch_size=len(texts))
    assert cosines(one_batch, torch_vectors).min() >= 0.999
    small_batches = fp32.encode(texts, batch_size=4)
    assert cosines(small_batches, torch_vectors).min() >= 0.999


@pytest.mark.parametrize("runtime", ["int8", "fp32"])
def test_vectors_are_normalised_deterministic_and_in_input_order(
    request, runtime: str, texts: list[str]
) -> None:
    embedder = request.getfixturevalue(runtime)
    vectors = embedder.encode(texts, batch_size=16)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, embedder.encode(texts, batch_size=16))
    np.testing.assert_allclose(embedder.encode(texts[::-1], batch_size=16)[::-1], vectors, atol=1e-5)


def test_int8_vector_does_not_depend_on_batch(int8, texts: list[str]) -> None:
    batched = int8.encode(texts, batch_size=64)
    single = np.vstack([int8.encode([text]) for text in texts])
    np.testing.assert_allclose(single, batched, atol=1e-6)


def test_bulk_encode_runs_texts_side_by_side_with_the_same_vectors(int8, texts: list[str]) -> None:
    many = (texts * 2)[: SPREAD_MIN_TEXTS + 3]
    assert int8._pool is not None  # 2 threads: bulk encodes take the side-by-side path
    done: list[int] = []
    bulk = int8.encode(many, batch_size=16, progress=lambda n, total: done.append(n))
    single = np.vstack([int8.encode([text]) for text in many])  # the multi-threaded session
    np.testing.assert_allclose(bulk, single, atol=1e-6)
    assert done[-1] == len(many) and len(done) > 1 and done == sorted(done)


def test_fp32_batch_and_single_agree(fp32, texts: list[str]) -> None:
    batched = fp32.encode(texts[:20], batch_size=8)
    single = np.vstack([fp32.encode([text]) for text in texts[:20]])
    np.testing.assert_allclose(single, batched, atol=1e-4)


def test_similar_tickets_are_closer_than_unrelated_ones(int8) -> None:
    vpn_a, vpn_b, printer = int8.encode(
        [
            "VPN keeps disconnecting when I work from home",
            "My remote access VPN connection drops every few minutes",
            "The printer in room 204 is out of toner",
        ]
    )
    assert vpn_a @ vpn_b > vpn_a @ printer + 0.2


def test_progress_reports_every_text_up_to_the_total(int8, texts: list[str]) -> None:
    calls: list[tuple[int, int]] = []
    int8.encode(texts[:10], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (10, 10)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_empty_input_gives_empty_matrix(int8) -> None:
    assert int8.encode([]).shape == (0, EMBEDDING_DIM)


def test_export_is_cached_and_reused(embed_settings: Settings) -> None:
    first = ensure_onnx_model(embed_settings, "int8")
    modified = first.stat().st_mtime_ns
    assert ensure_onnx_model(embed_settings, "int8") == first
    assert first.stat().st_mtime_ns == modified
    assert first.parent.parent == embed_settings.resolved_model_cache_dir / "onnx"
    assert not list(first.parent.glob(".build-*")), "temporary export files left behind"


def test_get_embedder_follows_settings_and_is_cached(embed_settings: Settings) -> None:
    onnx_settings = embed_settings.model_copy(update={"embed_runtime": "onnx"})
    embedder = get_embedder(onnx_settings)
    assert embedder is get_embedder(onnx_settings)
    assert embedder.model_id == "all-MiniLM-L6-v2/onnx-int8"
    torch_settings = embed_settings.model_copy(update={"embed_runtime": "torch"})
    assert get_embedder(torch_settings).model_id == "all-MiniLM-L6-v2/torch"
