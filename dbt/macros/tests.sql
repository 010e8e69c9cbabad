{# The generic tests the warehouse contract needs, written here (no dbt Hub package). #}

{# No two rows share `columns` (a composite key). #}
{% test unique_key(model, columns) %}
select {{ columns | join(', ') }}, count(*) as rows
  from {{ model }}
 group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{# Every row's session exists: what the child tables' foreign keys checked before migration 0010. #}
{% test has_session(model, to, columns) %}
select c.*
  from {{ model }} c
 where not exists (
       select 1 from {{ to }} p
        where {% for col in columns %}p.{{ col }} = c.{{ col }}{% if not loop.last %} and {% endif %}{% endfor %})
{% endtest %}

{# A duration is unknown (NULL) or not negative. #}
{% test non_negative(model, column_name) %}
select * from {{ model }} where {{ column_name }} < 0
{% endtest %}

{# A session does not end before it starts. #}
{% test ends_after_start(model) %}
select * from {{ model }} where ended_at < started_at
{% endtest %}
