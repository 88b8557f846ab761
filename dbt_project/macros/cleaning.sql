{#- Text and label normalisation shared by the staging models. Postgres regex classes are
    locale-dependent, so Unicode spaces and C1 control characters are listed explicitly. -#}

{#- Drop zero-width characters, turn every run of whitespace and control characters into one
    space, trim; empty -> null. serving/schemas.py applies the same rules to incoming tickets.
    The second regex only matches runs that need rewriting (an odd character, or two or more
    spaces), not every single space between words: a fifth of the cost on long bodies. -#}
{% macro clean_text(column) -%}
    {#- whitespace other than a plain space, and control characters (tabs and newlines included) -#}
    {%- set odd -%}
        [:cntrl:]\u0080-\u009f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000
    {%- endset -%}
    {%- set odd = odd | trim -%}
    nullif(
        btrim(
            regexp_replace(
                regexp_replace({{ column }}, '[\u200b-\u200d\u2060\ufeff]', '', 'g'),
                '[ {{ odd }}]*[{{ odd }}][ {{ odd }}]*| {2,}',
                ' ',
                'g'
            )
        ),
        ''
    )
{%- endmacro %}


{#- 'HR Support' -> 'hr_support', ' Internal - Project ' -> 'internal_project', '' -> null.
    Labels that are already normalised (the common case) skip the rewrite: the match costs a
    third of lower + regexp_replace on a million rows. -#}
{% macro normalise_label(column) -%}
    nullif(
        case
            when {{ column }} ~ '[^a-z0-9_]|^_|_$|__'
                then btrim(regexp_replace(lower(btrim({{ column }})), '[[:space:]_-]+', '_', 'g'), '_')
            else {{ column }}
        end,
        ''
    )
{%- endmacro %}


{#- Imported datasets name urgency levels differently; known synonyms map onto the four levels
    the classifier predicts, anything else becomes null (the raw value stays in urgency_raw).
    The synonyms mirror ticket_assets.sources.text.URGENCY_ALIASES (a test keeps them in step),
    so a ticket gets the same urgency whether ingestion or staging normalised it.
    Takes an already normalised label (see normalise_label). -#}
{% macro urgency_level(label_column) -%}
    {%- set synonyms = {
        'critical': ['critical', 'p1', 'sev1', '1', 'urgent', 'blocker', 'highest', 'critique', 'urgente'],
        'high': ['high', 'p2', 'sev2', '2', 'major', 'haute', 'elevee', 'élevée'],
        'medium': ['medium', 'p3', 'sev3', '3', 'normal', 'moderate', 'moyenne'],
        'low': ['low', 'p4', 'p5', 'sev4', '4', '5', 'minor', 'trivial', 'lowest', 'planning', 'basse', 'faible'],
    } -%}
    case
    {%- for level, names in synonyms.items() %}
        when {{ label_column }} in ('{{ names | join("', '") }}') then '{{ level }}'
    {%- endfor %}
    end
{%- endmacro %}


{#- A stable bucket in [0, 10000) from md5(value): the same in any Postgres version and easy to
    reproduce outside SQL (int(md5(v).hexdigest()[:8], 16) % 10000). -#}
{% macro hash_bucket(column) -%}
    mod(('x' || left(md5({{ column }}), 8))::bit(32)::bigint, 10000)
{%- endmacro %}
