-- Tables owned by the platform (not by dbt). Every statement is idempotent.
create schema if not exists raw;
create schema if not exists ops;
create schema if not exists features;

-- Raw tickets: one row per stable ticket id; imports upsert, so re-running adds nothing.
create table if not exists raw.tickets (
    ticket_id    text primary key,
    source       text        not null,            -- e.g. 'synthetic:seed=42', 'csv:train.csv.gz'
    title        text,
    body         text        not null,
    topic        text,                             -- label as given by the source, if any
    urgency      text,                             -- label as given by the source, if any
    channel      text,
    department   text,
    requester    text,
    language     text,
    created_at   timestamptz,                      -- null when the source has no timestamp
    text_hash    text        not null,             -- sha256 of normalised title + body
    extra        jsonb       not null default '{}'::jsonb,
    ingested_at  timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
create index if not exists tickets_updated_at_idx on raw.tickets (updated_at);
create index if not exists tickets_text_hash_idx on raw.tickets (text_hash);

-- Quarantine: malformed input rows with the reason; one row per (source, row reference).
create table if not exists raw.tickets_rejected (
    source       text        not null,
    row_ref      text        not null,             -- line number or source id
    reason       text        not null,
    raw_record   text,
    rejected_at  timestamptz not null default now(),
    primary key (source, row_ref)
);

-- Alerts sent to on-call (webhook and/or log); kept so the history survives the chat channel.
create table if not exists ops.alerts (
    id          bigserial primary key,
    at          timestamptz not null default now(),
    severity    text        not null,
    source      text        not null,
    title       text        not null,
    body        text        not null,
    delivered   boolean     not null default false,
    dedup_key   text
);

-- Knowledge-base chunks (from kb/*.md); the kb_index asset embeds and publishes them to Qdrant.
create table if not exists features.kb_chunks (
    chunk_id    text primary key,               -- content hash: unchanged text keeps its id
    article_id  text        not null,
    title       text        not null,
    topic       text,
    language    text,
    tags        text[]      not null default '{}',
    heading     text,
    text        text        not null,
    updated_at  timestamptz not null default now()
);

-- API prediction log: one row per triaged ticket, written in batches by the API's log writer.
-- `text` is null when the deployment redacts ticket text; the hash and length are always kept.
create table if not exists ops.predictions (
    request_id          uuid primary key,              -- per ticket; clients send it back with feedback
    call_request_id     uuid             not null,     -- the HTTP call (a batch shares one)
    created_at          timestamptz      not null default now(),
    endpoint            text             not null,     -- 'triage' | 'answer'
    text                text,
    text_sha256         text             not null,
    text_chars          integer          not null,
    channel             text,
    topic               text             not null,
    topic_confidence    double precision not null,
    urgency             text,
    urgency_confidence  double precision,
    probabilities       jsonb            not null,     -- {"topic": {...}, "urgency": {...}}
    low_confidence      boolean          not null,
    model_name          text             not null,
    model_version       text             not null,
    answer_mode         text,                          -- 'llm' | 'extractive' for /v1/answer
    kb_version          text,
    latency_ms          double precision not null
);
create index if not exists predictions_created_at_idx on ops.predictions (created_at);
create index if not exists predictions_model_idx on ops.predictions (model_name, model_version);

-- Feedback on a prediction; one row per request id, updated in place when sent again.
create table if not exists ops.feedback (
    request_id     uuid primary key references ops.predictions (request_id) on delete cascade,
    true_topic     text,
    true_urgency   text,
    draft_helpful  boolean,
    comment        text,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now()
);

-- Sentence embeddings, one row per (normalised text, embedding model): a text is encoded once per
-- model however many tickets share it. `embedding` is float32 little-endian (384 floats = 1,536
-- bytes for all-MiniLM-L6-v2). See ticket_assets/ml/embedding_store.py for why this lives here.
create table if not exists features.ticket_embeddings (
    text_hash   text        not null,
    model_id    text        not null,              -- e.g. 'all-MiniLM-L6-v2/onnx-int8'
    embedding   bytea       not null,
    created_at  timestamptz not null default now(),
    primary key (text_hash, model_id)
);

-- Every move of a registered model alias (challenger, champion): the audit trail of promotions
-- and rollbacks. MLflow holds the current alias; this table holds who moved it, when and why.
create table if not exists ops.model_alias_events (
    id            bigserial primary key,
    model_name    text        not null,
    alias         text        not null,
    from_version  integer,                         -- null when the alias was unset before
    to_version    integer     not null,
    actor         text        not null,
    reason        text,
    at            timestamptz not null default now()
);
create index if not exists model_alias_events_model_idx on ops.model_alias_events (model_name, alias, id);

-- CSV import sources: which file each `csv:<name>` source was last imported from. Sources are
-- named after the file's resolved path (name@hash); this table lets a re-import of a file loaded
-- before that rule keep its old `csv:<file name>` source and ticket ids (sources/store.py).
create table if not exists raw.csv_sources (
    source            text        primary key,     -- e.g. 'csv:export.csv@1a2b3c4d'
    resolved_path     text        not null,
    first_imported_at timestamptz not null default now(),
    last_imported_at  timestamptz not null default now()
);

-- Ticket memory: major incidents (bursts of mutually similar tickets well above their baseline rate),
-- written by the major_incidents asset; the incident sensor alerts once per row (cursor on seq).
create table if not exists ops.incidents (
    incident_id          text primary key,
    seq                  bigserial,
    detected_at          timestamptz      not null default now(),
    updated_at           timestamptz      not null default now(),
    first_seen           timestamptz      not null,
    last_seen            timestamptz      not null,
    size                 integer          not null,
    baseline_per_window  double precision not null,
    top_terms            text[]           not null,
    summary              jsonb            not null,  -- examples, departments, channels
    centroid             bytea            not null,  -- float32 unit vector of model_id
    model_id             text             not null,
    run_id               text                        -- the Dagster run that detected it
);
create index if not exists incidents_seq_idx on ops.incidents (seq);
alter table ops.predictions add column if not exists incident_id text;
