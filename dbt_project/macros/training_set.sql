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
        ) if 'updated_at' in columns and 'split_rule' in columns else '-infinity' -%}
        {%- set time_rule = training_set_time_rule() -%}
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
        inner join changed on changed.ticket_id = labelled.ticket_id
        {%- if 'split_rule' in columns %}
        union
        -- The time rule switched on or off (dates became usable, or degenerate): dated rows move.
        select text_hash from {{ this }}
        where ticket_id not like 'feedback:%'
            and split_rule is distinct from
                case when created_at is not null and {{ time_rule }} then 'time' else 'hash' end
        {%- endif %};
        analyze training_set_affected_hashes;
        -- Topics whose stratified hash split must be re-ranked (read before their rows go).
        create temp table training_set_affected_topics on commit drop as
        select distinct topic from {{ this }}
        where text_hash in (select text_hash from training_set_affected_hashes)
            or ticket_id like 'feedback:%'
        union
        select distinct staged.topic from {{ ref('stg_tickets') }} as staged
        where staged.text_hash in (select text_hash from training_set_affected_hashes)
            and staged.topic is not null;
        delete from {{ this }} where ticket_id like 'feedback:%'
    {%- else -%}
        create temp table training_set_affected_hashes (text_hash text) on commit drop;
        create temp table training_set_affected_topics (topic text) on commit drop
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


{#- Whether dated tickets may be split by time: some are dated and no single created_at value
    holds more than `degenerate_time_share` of them. Evaluated when the model compiles. -#}
{% macro training_set_time_rule() -%}
    {%- set share = var('degenerate_time_share') | float -%}
    {%- set usable = scalar_query(
        "select coalesce(max(n) <= " ~ share ~ " * sum(n), false) from ("
        ~ "select count(*) as n from " ~ ref('stg_tickets')
        ~ " where created_at is not null and not is_duplicate and topic is not null and text <> ''"
        ~ " group by created_at) as by_time"
    ) -%}
    {{ return(usable | default(false, true)) }}
{%- endmacro %}


{#- The stratified hash split: within each topic, rows ordered by md5(ticket_id); the first
    round(n * test_fraction) are 'test'. Only topics with changed rows are re-ranked, and only
    rows whose split changes are written. -#}
{% macro training_set_stratify_hash_split() -%}
    {%- set test_fraction = var('test_fraction') | float -%}
    with ranked as (
        select
            ticket_id,
            case
                when row_number() over (partition by topic order by md5(ticket_id) collate "C", ticket_id)
                    <= round(count(*) over (partition by topic) * {{ test_fraction }}::numeric)
                    then 'test'
                else 'train'
            end as split
        from {{ this }}
        where split_rule = 'hash'
        {%- if is_incremental() %}
            and topic in (
                select topic from training_set_affected_topics
                union
                select topic from {{ this }}
                where text_hash in (select text_hash from training_set_affected_hashes)
                    or ticket_id like 'feedback:%'
            )
        {%- endif %}
    )

    update {{ this }} as labelled
    set split = ranked.split
    from ranked
    where labelled.ticket_id = ranked.ticket_id
        and labelled.split <> ranked.split
{%- endmacro %}


{#- Puts every dated row on the right side of the time boundary (the oldest of the newest
    `test_fraction` dated rows). Only rows between the old and the new boundary change; the
    partial indexes on each split find them without reading the other rows. -#}
{% macro training_set_move_time_boundary() -%}
    {%- set test_fraction = var('test_fraction') | float -%}
    with n_test as (
        select round(count(*) * {{ test_fraction }})::bigint as n
        from {{ this }}
        where split_rule = 'time'
    ),

    boundary as (
        select event_at, ticket_id
        from {{ this }}
        where split_rule = 'time'
        order by event_at desc, ticket_id desc
        offset greatest((select n from n_test) - 1, 0)
        limit least((select n from n_test), 1)
    ),

    to_train as (
        update {{ this }} as labelled
        set split = 'train'
        where labelled.split_rule = 'time'
            and labelled.split = 'test'
            and (
                (labelled.event_at, labelled.ticket_id) < (select event_at, ticket_id from boundary)
                or not exists (select 1 from boundary)
            )
        returning 1
    )

    update {{ this }} as labelled
    set split = 'test'
    where labelled.split_rule = 'time'
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
                || ' where split_rule = ''time''';
            execute 'create index training_set_test_{{ suffix }} on {{ this }} (event_at, ticket_id)'
                || ' where split_rule = ''time'' and split = ''test''';
            execute 'create index training_set_train_{{ suffix }} on {{ this }} (event_at, ticket_id)'
                || ' where split_rule = ''time'' and split = ''train''';
        end if;
    end
    $indexes$
{%- endmacro %}
