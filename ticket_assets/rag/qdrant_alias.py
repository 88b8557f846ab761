"""Qdrant server collections behind an alias: how both indexes (knowledge base, tickets) publish.

Readers always query the alias; a writer fills a collection readers do not see, then repoints the
alias with one ``update_collection_aliases`` call (delete + create together, applied atomically by
Qdrant), so a reader sees the old collection or the new one, never a half-written one. Any
``QdrantClient`` works, including qdrant-client's local mode (how the tests stand in for a server).
"""

from __future__ import annotations

from typing import Any

from qdrant_client import QdrantClient, models

from ticket_assets.settings import Settings


def server_client(settings: Settings) -> QdrantClient:
    """The client for ``QDRANT_URL`` (and ``QDRANT_API_KEY``, never logged)."""
    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return QdrantClient(url=settings.qdrant_url, api_key=api_key, timeout=30)


def alias_target(client: QdrantClient, alias: str) -> str | None:
    """The collection ``alias`` names now, or None before the first publish."""
    for item in client.get_aliases().aliases:
        if item.alias_name == alias:
            return item.collection_name
    return None


def switch_alias(client: QdrantClient, alias: str, collection: str) -> str | None:
    """Point ``alias`` at ``collection`` in one atomic operation; returns the collection it named before."""
    previous = alias_target(client, alias)
    if previous != collection:
        operations: list[Any] = []
        if previous is not None:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        client.update_collection_aliases(change_aliases_operations=operations)
    return previous


def collections_with_prefix(client: QdrantClient, prefix: str) -> list[str]:
    return [c.name for c in client.get_collections().collections if c.name.startswith(prefix)]


def collection_metadata(client: QdrantClient, collection: str) -> dict[str, Any]:
    """What the writer stored on the collection (model id, version ...); {} when it stored nothing."""
    return dict(client.get_collection(collection).config.metadata or {})
