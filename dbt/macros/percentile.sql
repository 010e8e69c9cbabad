{# A continuous percentile of `expr` (PostgreSQL's percentile_cont), `p` in 0..1. #}
{% macro percentile(expr, p) -%}
percentile_cont({{ p }}) within group (order by {{ expr }})
{%- endmacro %}

{# Schemas as configured: `+schema: bi` gives `<target schema>_bi`, dbt's default, spelled out
   so that it does not depend on a package. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
{%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ target.schema }}_{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
