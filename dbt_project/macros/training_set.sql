{#- Hooks of the incremental training_set (see the model's header). They run in the model's
    transaction, so the temp table the pre-hook fills is what the model and post-hooks read. -#}

{#- Text hashes whose rows must be rewritten: groups holding a ticket staged since this table's
    newest updated_at, and the groups such a ticket left (its old hash is still in this table).
    Feedback rows are deleted: the model recomputes all of them. Empty on a full build. -#}
{% macro training_set_collect_changes() -%}
    {%- if is_incremental() -%}
        {#- A table built before updated_at existed: everything counts as changed. -#}
        {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        {%- set watermark = scalar_query(
            "select coalesce(max(updated_at)::text, '-infinity') from " ~ this
            ~ " where ticket_id not like 'feedback:%'"
        ) if 'updated_at' in columns else '-infinity' -%}
        create temp table training_set_affected_hashes on commit drop as
        with changed as (
            select ticket_id, text_hash
            from {{ ref('stg_tickets') }}
            where updated_at > '{{ watermark }}'::timestamptz
        )
        select text_hash from changed
        union
        select labelled.text_hash
        from {{ this }} as labelled
        inner join changed on changed.ticket_id = labelled.ticket_id;
        analyze training_set_affected_hashes;
        delete from {{ this }} where ticket_id like 'feedback:%'
    {%- else -%}
        create temp table training_set_affected_hashes (text_hash text) on commit drop
    {%- endif -%}
{%- endmacro %}


{#- Rows of rewritten groups whose ticket is no longer a canonical, labelled, non-empty one (a
    copy claiming an earlier created_at took over, or the label or text went away). -#}
{% macro training_set_drop_stale_rows() -%}
    delete from {{ this }} as labelled
    using {{ ref('stg_tickets') }} as staged
    where staged.ticket_id = labelled.ticket_id
        and labelled.text_hash in (select text_hash from training_set_affected_hashes)
        and (staged.is_duplicate or staged.topic is null or staged.text = '')
{%- endmacro %}


{#- Puts every dated row on the right side of the time boundary (the oldest of the newest
    `test_fraction` dated rows). Only rows between the old and the new boundary change; the
    partial indexes on each split find them without reading the other rows. -#}
{% macro training_set_move_time_boundary() -%}
    {%- set test_fraction = var('test_fraction') | float -%}
    with n_test as (
        select round(count(*) * {{ test_fraction }})::bigint as n
        from {{ this }}
        where created_at is not null
    ),

    boundary as (
        select event_at, ticket_id
        from {{ this }}
        where created_at is not null
        order by event_at desc, ticket_id desc
        offset greatest((select n from n_test) - 1, 0)
        limit least((select n from n_test), 1)
    ),

    to_train as (
        update {{ this }} as labelled
        set split = 'train'
        where labelled.created_at is not null
            and labelled.split = 'test'
            and (
                (labelled.event_at, labelled.ticket_id) < (select event_at, ticket_id from boundary)
                or not exists (select 1 from boundary)
            )
        returning 1
    )

    update {{ this }} as labelled
    set split = 'test'
    where labelled.created_at is not null
        and labelled.split = 'train'
        and (labelled.event_at, labelled.ticket_id) >= (select event_at, ticket_id from boundary)
{%- endmacro %}


{#- ANALYZE only a freshly built table: on an incremental run a few percent of new rows barely
    move the statistics (autovacuum re-analyzes after 10 % changed), and sampling a million
    wide rows costs about half a second. -#}
{% macro analyze_if_never_analyzed(relation) -%}
    do $analyze$
    begin
        if not exists (
            select 1 from pg_stat_user_tables
            where relid = '{{ relation }}'::regclass
                and coalesce(last_analyze, last_autoanalyze) is not null
        ) then
            execute 'analyze {{ relation }}';
        end if;
    end
    $analyze$
{%- endmacro %}


{#- Partial indexes on the dated rows and on each split (dbt's `indexes` config has no WHERE):
    built once per table; names carry a timestamp so they never clash with the previous table's
    while a full refresh swaps them. -#}
{% macro training_set_split_indexes() -%}
    {%- set suffix = modules.datetime.datetime.utcnow().strftime('%Y%m%d%H%M%S%f') -%}
    do $indexes$
    begin
        if not exists (select 1 from pg_index where indrelid = '{{ this }}'::regclass and indpred is not null) then
            execute 'create index training_set_dated_{{ suffix }} on {{ this }} (event_at, ticket_id)'
                || ' where created_at is not null';
            execute 'create index training_set_test_{{ suffix }} on {{ this }} (event_at, ticket_id)'
                || ' where created_at is not null and split = ''test''';
            execute 'create index training_set_train_{{ suffix }} on {{ this }} (event_at, ticket_id)'
                || ' where created_at is not null and split = ''train''';
        end if;
    end
    $indexes$
{%- endmacro %}
