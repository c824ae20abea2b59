-- The migration engine reads each operator's evidence (sign-ins and call totals) page by page of
-- operator ids.
CREATE INDEX usage_events_operator ON usage_events(operator_id);
CREATE INDEX usage_summary_operator ON usage_summary(operator_id);
