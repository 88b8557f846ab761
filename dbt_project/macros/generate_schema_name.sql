{#- Models land in the schema they name (`staging`, `marts`), not `<target schema>_<name>`:
    the platform and its consumers address these schemas by fixed names. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
