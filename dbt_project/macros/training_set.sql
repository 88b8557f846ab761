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
            ~ " where not " ~ feedback_row()
        ) if 'updated_at' in columns and 'split_rule' in columns else '-infinity' -%}
        {%- set rule = training_set_time_rule() -%}
        {%- set time_rule = rule[0] -%}
        {{ training_set_rule_table(rule) }}
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
        -- Feedback rows are undated; each branch reads one partial index (see split indexes).
        select text_hash from {{ this }}
        {%- if time_rule %}
        where split_rule is distinct from 'time' and created_at is not null
        {%- else %}
        where split_rule = 'time'
        {%- endif %}
        {%- endif %};
        analyze training_set_affected_hashes;
        -- Topics whose stratified hash split must be re-ranked (read before their rows go).
        create temp table training_set_affected_topics on commit drop as
        -- Two branches, not one OR: each reads an index (text_hash; ticket_id's "C" order serves
        -- the prefix), where the OR read the whole table.
        select topic from {{ this }}
        where text_hash in (select text_hash from training_set_affected_hashes)
        union
        select topic from {{ this }} where {{ feedback_row() }}
        union
        select distinct staged.topic from {{ ref('stg_tickets') }} as staged
        where staged.text_hash in (select text_hash from training_set_affected_hashes)
            and staged.topic is not null;
        delete from {{ this }} where {{ feedback_row() }}
    {%- else -%}
        {{ training_set_rule_table(training_set_time_rule()) }}
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


{#- The staged tickets training_set holds: canonical, labelled, with text. One definition, because
    the time split's size is counted from it (training_set_time_rule) and its rows are the model's. -#}
{% macro labelled_predicate() -%}
    not is_duplicate and topic is not null and text <> ''
{%- endmacro %}


{#- training_set's rows from agents' feedback: stg_feedback_labels ids them 'feedback:<request id>',
    a prefix no ingest path gives a ticket; ticket_id's "C" order lets its index serve the prefix. -#}
{% macro feedback_row() -%}
    ticket_id like 'feedback:%'
{%- endmacro %}


{#- The staged rows the time rule reads: the labelled ones with a date. stg_tickets keeps a partial
    index on exactly this predicate (`stg_tickets_partial_indexes`), so the rule reads the index (about
    25 MB at 1M tickets) in created_at order instead of the whole wide table. -#}
{% macro dated_labelled_predicate() -%}
    created_at is not null and {{ labelled_predicate() }}
{%- endmacro %}


{#- Whether dated tickets may be split by time - some are dated and no single created_at value
    holds more than `degenerate_time_share` of them - and how many there are (the time split's
    rows: the boundary hook needs no count of its own). Evaluated once per build, by the pre-hook,
    on the partial index in created_at order. A value holding more than half of the rows covers
    the middle position, so for a share of one half or more only the median value's rows are
    counted: a count and a walk to the middle of the index, 0.23 → 0.13 s at 1M tickets. A smaller
    share counts each value's run (a group aggregate, no sort). Returns [usable, n_dated]. -#}
{% macro training_set_time_rule() -%}
    {%- set share = var('degenerate_time_share') | float -%}
    {%- if not execute -%}{{ return([false, 0]) }}{%- endif -%}
    {%- set staged = ref('stg_tickets') ~ " where " ~ dated_labelled_predicate() -%}
    {%- if share >= 0.5 -%}
        {%- set rule =
            "with total as (select count(*) as n from " ~ staged ~ "),"
            ~ " median as (select created_at from " ~ staged ~ " order by created_at"
            ~ " offset (select n / 2 from total) limit 1)"
            ~ " select n > 0 and (select count(*) from " ~ staged
            ~ " and created_at = (select created_at from median)) <= " ~ share ~ " * n, n from total" -%}
    {%- else -%}
        {%- set rule =
            "select coalesce(max(n) <= " ~ share ~ " * sum(n), false), coalesce(sum(n), 0)::bigint from"
            ~ " (select count(*) as n from " ~ staged ~ " group by created_at) as per_value" -%}
    {%- endif -%}
    {#- Run while the hook renders, before tune_session's settings apply: set them here too. -#}
    {%- set row = run_query("set jit = off; set work_mem = '" ~ var('work_mem') ~ "'; " ~ rule).rows[0] -%}
    {{ return([row[0], row[1]]) }}
{%- endmacro %}


{#- The temp table the model and the hooks read the rule from. -#}
{% macro training_set_rule_table(rule) -%}
    create temp table training_set_rule on commit drop as
    select {{ rule[0] }} as usable, {{ rule[1] if rule[0] else 0 }}::bigint as n_time;
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
        -- The first clause is the untimed index's predicate: the planner reads that index when few
        -- rows are split by hash (it cannot infer it from split_rule = 'hash').
        where split_rule is distinct from 'time' and split_rule = 'hash'
        {%- if is_incremental() %}
            and topic in (
                select topic from training_set_affected_topics
                union
                select topic from {{ this }}
                where text_hash in (select text_hash from training_set_affected_hashes)
                union
                select topic from {{ this }} where {{ feedback_row() }}
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
    `test_fraction` dated rows). Only rows between the old and the new boundary change. Three
    index probes come first - the new boundary, the oldest 'test' and the newest 'train' row -
    and each update runs only when rows lie on the wrong side, between constants: against the
    boundary as a subquery's value the planner expected a third of a split to move and read the
    whole table (0.3 s at 1M tickets), where between two known keys it reads the partial index.
    With no boundary (no dated rows) every dated row is 'train': the sentinel sorts after any
    real time. -#}
{% macro training_set_move_time_boundary() -%}
    {%- set test_fraction = var('test_fraction') | float -%}
    {%- if not execute -%}{{ return("select 1") }}{%- endif -%}
    {#- Keys come back as SQL constants (quote_literal), never through agate's type guessing. -#}
    {%- set key = "format('(%L::timestamptz, %L)', event_at, ticket_id)" -%}
    {%- set dated = "from " ~ this ~ " where split_rule = 'time'" -%}
    {#- The time split holds exactly the dated, labelled staged tickets the pre-hook counted. -#}
    {%- set row = run_query(
        "with n_test as (select round(n_time * " ~ test_fraction ~ ")::bigint as n from training_set_rule),"
        ~ " found as (select event_at, ticket_id " ~ dated ~ " order by event_at desc, ticket_id desc"
        ~ " offset greatest((select n from n_test) - 1, 0) limit least((select n from n_test), 1)),"
        ~ " boundary as (select coalesce((select event_at from found), 'infinity') as event_at,"
        ~ " coalesce((select ticket_id from found), '') as ticket_id),"
        ~ " oldest_test as (select event_at, ticket_id " ~ dated ~ " and split = 'test'"
        ~ " order by event_at, ticket_id limit 1),"
        ~ " newest_train as (select event_at, ticket_id " ~ dated ~ " and split = 'train'"
        ~ " order by event_at desc, ticket_id desc limit 1)"
        ~ " select (select " ~ key ~ " from boundary),"
        ~ " (select " ~ key ~ " from oldest_test"
        ~ " where (event_at, ticket_id) < (select event_at, ticket_id from boundary)),"
        ~ " (select " ~ key ~ " from newest_train"
        ~ " where (event_at, ticket_id) >= (select event_at, ticket_id from boundary))"
    ).rows[0] -%}
    {%- set boundary, first_test, last_train = row[0], row[1], row[2] -%}
    {%- set statements = [] -%}
    {%- if first_test is not none -%}
        {%- do statements.append(
            "update " ~ this ~ " set split = 'train' where split_rule = 'time' and split = 'test'"
            ~ " and (event_at, ticket_id) >= " ~ first_test ~ " and (event_at, ticket_id) < " ~ boundary) -%}
    {%- endif -%}
    {%- if last_train is not none -%}
        {%- do statements.append(
            "update " ~ this ~ " set split = 'test' where split_rule = 'time' and split = 'train'"
            ~ " and (event_at, ticket_id) >= " ~ boundary ~ " and (event_at, ticket_id) <= " ~ last_train) -%}
    {%- endif -%}
    {{ return(statements | join(";\n") if statements else "select 1") }}
{%- endmacro %}


{#- VACUUM (ANALYZE) only a freshly built table, after its transaction commits (VACUUM cannot
    run inside one): the statistics let the next incremental run plan for its few new rows, and
    the visibility map lets counts and boundary lookups over a million rows read only the index.
    On an incremental run a few percent of changed rows barely move either (autovacuum follows
    after 10-20 % changed); a million wide rows cost about a second. -#}
{% macro vacuum_if_never_vacuumed(relation) -%}
    {%- set never = scalar_query(
        "select coalesce(last_vacuum, last_autovacuum) is null from pg_stat_user_tables"
        ~ " where relid = '" ~ relation ~ "'::regclass"
    ) -%}
    {%- if never -%} vacuum (analyze) {{ relation }} {%- else -%} select 1 {%- endif -%}
{%- endmacro %}


{#- Autovacuum after about every load (`autovacuum_scale_factor` of the rows changed or inserted)
    instead of PostgreSQL's default of a fifth of the table. An incremental run rewrites rows all
    over the table (training_set's time boundary moves a day of rows from 'test' to 'train'), and
    every page it touches loses its visibility-map bit: until a vacuum, index-only scans (the time
    rule, the boundary walk, row counts) fetch those rows from the heap. At 1M tickets a per-topic
    count of training_set took 0.15 s after a vacuum and 0.61 s after five daily loads of 10k
    without one (dim_topics now counts staged rows on their own index instead); the default
    threshold lets that grow for some twenty loads. Set once per table (a changed table keeps it; a full
    refresh builds a new one, which gets it again). -#}
{% macro autovacuum_follows_loads(relation) -%}
    {%- set scale = var('autovacuum_scale_factor') | float -%}
    {%- set options = ['autovacuum_vacuum_scale_factor=' ~ scale, 'autovacuum_vacuum_insert_scale_factor=' ~ scale] -%}
    do $autovacuum$
    begin
        if not coalesce((
            select c.reloptions @> array['{{ options | join("', '") }}']::text[]
            from pg_class as c where c.oid = '{{ relation }}'::regclass
        ), false) then
            execute 'alter table {{ relation }} set ({{ options | join(", ") }})';
        end if;
    end
    $autovacuum$
{%- endmacro %}


{#- ANALYZE a source whose statistics are missing or stale (over 10 % of its rows written since,
    autovacuum's own threshold, which it applies only later and asynchronously): without them the
    planner guesses that a third of a million-row table is new and scans all of it. -#}
{% macro analyze_if_stale(relation) -%}
    do $analyze$
    begin
        if exists (
            select 1 from pg_stat_user_tables s join pg_class c on c.oid = s.relid
            where s.relid = '{{ relation }}'::regclass
                and (coalesce(s.last_analyze, s.last_autoanalyze) is null
                     or s.n_mod_since_analyze > 0.1 * greatest(c.reltuples, 0))
        ) then
            execute 'analyze {{ relation }}';
        end if;
    end
    $analyze$
{%- endmacro %}


{#- Partial indexes (dbt's `indexes` config has no WHERE): each built once per table, if no index of
    that name prefix exists; names carry a timestamp so they never clash with the previous table's
    while a full refresh swaps them. `indexes`: (name, "(columns) where predicate") pairs. -#}
{% macro partial_indexes(relation, prefix, indexes) -%}
    {%- set suffix = modules.datetime.datetime.utcnow().strftime('%Y%m%d%H%M%S%f') -%}
    do $indexes$
    begin
        {%- for name, definition in indexes %}
        if not exists (
            select 1 from pg_index i join pg_class c on c.oid = i.indexrelid
            where i.indrelid = '{{ relation }}'::regclass and c.relname like '{{ (prefix ~ '_' ~ name ~ '_') | replace('_', '\\_') }}%'
        ) then
            execute 'create index {{ prefix }}_{{ name }}_{{ suffix }} on {{ relation }} {{ definition | replace("'", "''") }}';
        end if;
        {%- endfor %}
    end
    $indexes$
{%- endmacro %}


{#- training_set: on the dated rows, on each split and on the rows not split by time. -#}
{% macro training_set_split_indexes() -%}
    {{ partial_indexes(this, 'training_set', [
        ('dated', "(event_at, ticket_id) where split_rule = 'time'"),
        ('test', "(event_at, ticket_id) where split_rule = 'time' and split = 'test'"),
        ('train', "(event_at, ticket_id) where split_rule = 'time' and split = 'train'"),
        ('untimed', "(created_at) where split_rule is distinct from 'time'"),
    ]) }}
{%- endmacro %}


{#- stg_tickets: the rows the time rule reads (see dated_labelled_predicate), and the labelled rows
    by topic, which dim_topics counts (see the model). -#}
{% macro stg_tickets_partial_indexes() -%}
    {{ partial_indexes(this, 'stg_tickets', [
        ('dated', "(created_at) where " ~ dated_labelled_predicate()),
        ('labelled', "(topic) where " ~ labelled_predicate()),
    ]) }}
{%- endmacro %}
