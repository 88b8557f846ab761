"""What the API serves right now: the champion model and the knowledge-base index, hot-swapped.

Each store holds one immutable snapshot and replaces the reference in a single assignment, so a
request that read the snapshot keeps a consistent (model, info) pair even while a newer version
is being loaded. Loading happens in a worker thread, never on the event loop, and the swap only
happens after the new version is fully loaded: no request sees a half-loaded model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from ticket_assets.core.labels import LabelNames
from ticket_assets.core.names import CHAMPION
from ticket_assets.settings import Settings

if TYPE_CHECKING:  # loaded lazily: importing them pulls in scikit-learn and MLflow
    from ticket_assets.ml.predict import TriageModel
    from ticket_assets.ml.registry import ModelVersionInfo
    from ticket_assets.rag.index import KnowledgeBase

log = logging.getLogger(__name__)


def _labels(model: TriageModel, target: str) -> tuple[str, ...]:
    """The label set of one target; () when the model has no such target (e.g. no urgency labels)."""
    try:
        return tuple(str(label) for label in model.labels(target))
    except KeyError:
        return ()


@dataclass(frozen=True)
class ServingModel:
    """A fully loaded model version and what the API reports about it."""

    model: TriageModel
    info: ModelVersionInfo
    name: str
    version: str
    topics: tuple[str, ...]
    urgencies: tuple[str, ...]
    routing: dict[str, tuple[str, ...]] = field(default_factory=dict)  # routing target -> labels
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def from_registry(cls, model: TriageModel, info: ModelVersionInfo) -> ServingModel:
        return cls(
            model=model,
            info=info,
            name=info.name,
            version=info.version,
            topics=_labels(model, "topic"),
            urgencies=_labels(model, "urgency"),
            routing={name: _labels(model, name) for name in getattr(model, "routing_targets", [])},
        )

    def describe(self, label_names: LabelNames | None = None) -> dict[str, Any]:
        """What /v1/model reports; the registry keeps metrics and data versions as version tags."""
        tags = dict(self.info.tags)
        names = label_names or LabelNames()
        display = self.model.metadata.get("topic_display", {})
        return {
            "name": self.name,
            "version": self.version,
            "aliases": list(self.info.aliases),
            "run_id": self.info.run_id,
            "created_at": self.info.created_at,
            "data_version": _with_prefix(tags, "data."),
            "metrics": {key: _as_float(value) for key, value in _with_prefix(tags, "metric.").items()},
            "tags": tags,
            "embedding_model": self.model.embedding_model_id,
            "topics": list(self.topics),
            "topic_names": names.names_of("topic", self.topics, display),
            "urgencies": list(self.urgencies),
            "routing": {name: list(labels) for name, labels in self.routing.items()},
            "routing_names": {name: names.names_of(name, labels) for name, labels in self.routing.items()},
            "loaded_at": self.loaded_at,
        }


def _with_prefix(tags: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {key.removeprefix(prefix): value for key, value in tags.items() if key.startswith(prefix)}


def _as_float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _registry_probe(settings: Settings) -> Callable[[], str | None]:
    from ticket_assets.ml import registry

    registry.configure_mlflow(settings)

    def probe() -> str | None:
        return registry.get_alias_version(settings.model_name, CHAMPION, settings=settings)

    return probe


def _registry_loader(settings: Settings) -> Callable[[str], ServingModel]:
    from ticket_assets.ml import registry

    def load(version: str) -> ServingModel:
        model, info = registry.load_model_version(settings.model_name, version, settings=settings)
        return ServingModel.from_registry(model, info)

    return load


class ModelStore:
    """The champion model, swapped atomically when the alias moves."""

    def __init__(
        self,
        settings: Settings,
        *,
        validate: Callable[[ServingModel], None] | None = None,
        on_swap: Callable[[ServingModel], None] | None = None,
    ) -> None:
        self._settings = settings
        self._probe: Callable[[], str | None] | None = None  # set on first refresh (imports MLflow)
        self._loader: Callable[[str], ServingModel] | None = None
        self._validate = validate or (lambda model: None)
        self._on_swap = on_swap or (lambda model: None)
        self._current: ServingModel | None = None
        self._lock = asyncio.Lock()  # one load at a time; requests never take it
        self.last_error: str | None = None
        self.reloads = 0
        self._rejected_version: str | None = None

    @property
    def current(self) -> ServingModel | None:
        return self._current

    def _check(self, loaded: ServingModel) -> None:
        """A version we cannot serve never replaces one we can, and is not reloaded every poll."""
        try:
            self._validate(loaded)
        except Exception:
            self._rejected_version = loaded.version
            raise

    async def refresh(self) -> bool:
        """Load the alias's version if it differs from the served one; True when a swap happened."""
        async with self._lock:
            try:
                if self._probe is None or self._loader is None:
                    self._probe = await anyio.to_thread.run_sync(_registry_probe, self._settings)
                    self._loader = _registry_loader(self._settings)
                version = await anyio.to_thread.run_sync(self._probe)
                if version is None:
                    self.last_error = f"model {self._settings.model_name!r} has no {CHAMPION!r} alias yet"
                    return False
                if version == self._rejected_version or (
                    self._current is not None and self._current.version == version
                ):
                    return False
                # Load by the version number just read, so an alias that moves again mid-load
                # is picked up by the next poll instead of leaving us with a mislabelled model.
                loaded = await anyio.to_thread.run_sync(self._loader, version)
                self._check(loaded)
            except Exception as exc:  # registry down or a broken version: keep serving the old one
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model refresh failed: %s", self.last_error)
                return False
            previous = self._current
            self._current = loaded
            self.last_error = None
            if previous is not None:
                self.reloads += 1
                log.info("serving %s version %s (was %s)", loaded.name, loaded.version, previous.version)
            else:
                log.info("serving %s version %s", loaded.name, loaded.version)
            self._on_swap(loaded)
            return True


class KnowledgeBaseStore:
    """The retrieval index; refreshed in a thread when the KB snapshot changes."""

    label = "knowledge-base"  # in log lines; subclasses serve other indexes the same way

    def __init__(
        self,
        settings: Settings,
        *,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._settings = settings
        self._on_change = on_change or (lambda version: None)
        self._current: KnowledgeBase | None = None
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    @property
    def current(self) -> KnowledgeBase | None:
        return self._current

    @property
    def version(self) -> str | None:
        return None if self._current is None else str(self._current.version)

    async def refresh(self) -> bool:
        async with self._lock:
            try:
                if self._current is None:
                    self._current = await anyio.to_thread.run_sync(self._open)
                    changed = True
                else:
                    before = self.version
                    await anyio.to_thread.run_sync(self._current.refresh_if_changed)
                    changed = self.version != before
            except Exception as exc:  # no snapshot yet or a broken one: keep the old index
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("%s refresh failed: %s", self.label, self.last_error)
                return False
            self.last_error = None
            if changed:
                log.info("serving %s index version %s", self.label, self.version)
                self._on_change(str(self.version))
            return changed

    def _open(self) -> KnowledgeBase:
        from ticket_assets.rag.index import KnowledgeBase

        return KnowledgeBase.open(self._settings)


async def poll_forever(interval_s: float, stores: Sequence[ModelStore | KnowledgeBaseStore]) -> None:
    """The reload poller: every interval, give each store the chance to pick up a new version."""
    while True:
        await asyncio.sleep(interval_s)
        for store in stores:
            try:
                await store.refresh()
            except Exception:  # a bug in one refresh must not stop hot reload for good
                log.exception("reload poll failed for %s", type(store).__name__)
