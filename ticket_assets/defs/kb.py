"""Knowledge-base area: kb/*.md → heading-aware chunks → a Qdrant index the API reads."""

from pathlib import Path

import dagster as dg

from ticket_assets.core.paths import KB_DIR
from ticket_assets.defs.metadata import counts_markdown, markdown_table
from ticket_assets.defs.resources import PlatformSettingsResource, PostgresResource
from ticket_assets.rag.kb import Chunk, chunk_article, load_articles

OWNERS = ["team:support-knowledge"]

# Questions whose right article is known: the index is only published if they still land.
RETRIEVAL_PROBES = {
    "I forgot my password and my account is locked": "access_password",
    "the VPN disconnects every few minutes when working from home": "vpn_network",
    "someone sent me an email asking to confirm my password": "security_phishing",
    "the printer on the 3rd floor shows a paper jam": "printer",
}


@dg.asset(
    key="kb_chunks",
    group_name="knowledge_base",
    kinds={"markdown", "postgres"},
    owners=OWNERS,
    code_version="1",
    description=(
        "Knowledge-base articles from `kb/*.md` split into heading-aware chunks with stable, content-hash ids, "
        "stored in `features.kb_chunks`. Unchanged text keeps its chunk id across runs."
    ),
)
def kb_chunks(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
    articles = load_articles(KB_DIR)
    chunks = [chunk for article in articles for chunk in chunk_article(article)]
    with postgres.connect() as conn:
        previous = {row[0] for row in conn.execute("select chunk_id from features.kb_chunks").fetchall()}
        current = {chunk.chunk_id for chunk in chunks}
        with conn.transaction():
            conn.execute("delete from features.kb_chunks where chunk_id <> all(%s)", (list(current),))
            with conn.cursor() as cursor:
                cursor.executemany(
                    "insert into features.kb_chunks (chunk_id, article_id, title, topic, language, tags, heading, text)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict (chunk_id) do nothing",
                    [
                        (
                            c.chunk_id,
                            c.article_id,
                            c.title,
                            c.topic,
                            c.language,
                            list(c.tags),
                            c.heading,
                            c.text,
                        )
                        for c in chunks
                    ],
                )
    by_language: dict[str, int] = {}
    by_topic: dict[str, int] = {}
    for article in articles:
        by_language[article.language] = by_language.get(article.language, 0) + 1
        by_topic[article.topic] = by_topic.get(article.topic, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "articles": len(articles),
            "chunks": len(chunks),
            "new_chunks": len(current - previous),
            "removed_chunks": len(previous - current),
            "articles_by_language": counts_markdown("language", by_language),
            "articles_by_topic": counts_markdown("topic", by_topic),
            "preview": dg.MetadataValue.md(
                markdown_table(
                    ["chunk_id", "article", "heading", "words"],
                    [(c.chunk_id[:12], c.article_id, c.heading, len(c.text.split())) for c in chunks[:8]],
                )
            ),
        }
    )


def _load_chunks(postgres: PostgresResource) -> list[Chunk]:
    from ticket_assets.rag.index import load_stored_chunks

    with postgres.connect() as conn:
        return load_stored_chunks(conn)


@dg.asset(
    key="kb_index",
    deps=["kb_chunks"],
    group_name="knowledge_base",
    kinds={"qdrant"},
    owners=OWNERS,
    automation_condition=dg.AutomationCondition.eager(),
    description=(
        "The knowledge-base vector index the API retrieves from. Local mode: an immutable, versioned snapshot "
        "published by an atomic pointer swap (the API loads it into an in-memory Qdrant collection). With "
        "`QDRANT_URL`: a versioned collection behind the alias `kb_chunks`, switched atomically."
    ),
)
def kb_index(
    context: dg.AssetExecutionContext, postgres: PostgresResource, platform: PlatformSettingsResource
) -> dg.MaterializeResult:
    from ticket_assets.ml.embed import get_embedder
    from ticket_assets.rag.index import KnowledgeBase, build_snapshot, embed_chunks, publish

    settings = platform.get()
    chunks = _load_chunks(postgres)
    if not chunks:
        raise dg.Failure("features.kb_chunks is empty: materialise kb_chunks first")
    embedder = get_embedder(settings)
    # Title and heading path go into the vector too: that context is what finds the right article.
    vectors = embed_chunks(chunks, embedder, settings.embed_batch_size)
    snapshot = build_snapshot(chunks, vectors, embedder.model_id, settings)

    # Probe the snapshot before anyone can read it: a broken index is never published.
    candidate = KnowledgeBase.from_snapshot(snapshot)
    probe_rows, hits = [], 0
    for question, topic in RETRIEVAL_PROBES.items():
        passages = candidate.search(embedder.encode([question])[0], k=3)
        ok = any(p.topic == topic for p in passages)
        hits += ok
        probe_rows.append(
            (question, topic, passages[0].article_id if passages else "–", "yes" if ok else "no")
        )
    if hits < len(RETRIEVAL_PROBES) - 1:
        raise dg.Failure(f"retrieval probes failed ({hits}/{len(RETRIEVAL_PROBES)}); index not published")
    publish(snapshot, settings)
    return dg.MaterializeResult(
        metadata={
            "index_version": snapshot.version,
            "chunks": snapshot.n_chunks,
            "articles": snapshot.n_articles,
            "embedding_model": embedder.model_id,
            "backend": "qdrant server (alias kb_chunks)"
            if settings.qdrant_url
            else "qdrant local (snapshot)",
            "snapshot_path": dg.MetadataValue.path(str(Path(snapshot.path))),
            "retrieval_probes": dg.MetadataValue.md(
                markdown_table(["question", "expected topic", "top article", "hit in top 3"], probe_rows)
            ),
        }
    )
