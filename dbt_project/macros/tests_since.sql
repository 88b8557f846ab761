{#- Data tests on the large models carry `where: "updated_at > __tests_since__"`. With the var
    `tests_since` (a timestamp; the Dagster dbt asset and the benchmark pass the staging
    watermark from before the build on incremental runs) they check only the rows staged since;
    without it (first builds, full refreshes, plain `dbt build`) they check every row.
    Uniqueness of ticket_id is enforced by unique indexes, so rechecking a million unchanged
    rows on every run (12 s per million tickets) adds little. -#}
{#- The watermark, read only when tests execute: read while dbt parses, the variable's new value
    on every run would make dbt re-parse the files that read it (and write the manifest again). -#}
{% macro tests_since() -%}
    {{ return(var('tests_since', none) or (env_var('TICKETOPS_DBT_TESTS_SINCE', '') if execute else '')) }}
{%- endmacro %}


{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where and '__tests_since__' in where -%}
        {%- set since = tests_since() -%}
        {%- if since -%}
            {%- set where = where | replace('__tests_since__', "'" ~ since ~ "'::timestamptz") -%}
        {%- else -%}
            {%- set where = where | replace('updated_at > __tests_since__', 'true') -%}
        {%- endif -%}
    {%- endif -%}
    {%- if where -%}
        {{ return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}
