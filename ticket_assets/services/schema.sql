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
