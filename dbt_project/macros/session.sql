{#- Session settings for the transaction that builds a model (pre-hook, so `set local` ends with
    it). JIT compilation costs ~1 s per query and pays off only for much longer analytics; the
    larger work_mem keeps the million-row sorts and hashes in memory. -#}
{% macro tune_session() -%}
    set local jit = off;
    set local work_mem = '{{ var("work_mem") }}';
{%- endmacro %}


{#- The first value of a one-row query, fetched while the model compiles (none at parse time).
    Inlining a watermark as a literal lets the planner estimate how few rows are new; behind a
    subquery it assumes a third of the table and picks plans that scan everything. -#}
{% macro scalar_query(sql) -%}
    {%- if execute -%}
        {{ return(run_query(sql).columns[0].values()[0]) }}
    {%- endif -%}
    {{ return(none) }}
{%- endmacro %}
