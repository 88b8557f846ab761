{#-
  dbt writes an enforced contract's constraints only when it creates a table, so an incremental
  table built before its model had the contract would run on without them. This post-hook adds the
  missing ones: NOT NULL for the columns whose contract says so, and the model's named check
  constraints. When they are there (every run after the first) it is one catalog lookup.
-#}
{% macro ensure_contract_constraints() %}
{%- set not_null = [] %}
{%- for column in model.columns.values() %}
    {%- for constraint in column.get('constraints', []) if constraint.type == 'not_null' %}
        {%- do not_null.append(column.name) %}
    {%- endfor %}
{%- endfor %}
{%- set checks = model.get('constraints', []) | selectattr('type', 'equalto', 'check') | list %}
do $contract$
begin
{%- if not_null %}
    if exists (
        select 1 from pg_attribute
        where attrelid = '{{ this }}'::regclass and not attnotnull
            and attname in ({% for name in not_null %}'{{ name }}'{{ ", " if not loop.last }}{% endfor %})
    ) then
        alter table {{ this }}
        {%- for name in not_null %}
            alter column {{ adapter.quote(name) }} set not null{{ "," if not loop.last else ";" }}
        {%- endfor %}
    end if;
{%- endif %}
{%- for check in checks %}
    if not exists (
        select 1 from pg_constraint where conrelid = '{{ this }}'::regclass and conname = '{{ check.name }}'
    ) then
        alter table {{ this }} add constraint {{ check.name }} check ({{ check.expression }});
    end if;
{%- endfor %}
end
$contract$
{% endmacro %}
