-- params: priced, sources
-- Priced events (priced_events.sql, with landing_date and key) joined with their fields from
-- their sources (event_sources.sql): one row per priced event, with every column a ledger needs.
SELECT p.landing_date, p.key, p.line_no, s.request_id, s.org_id, s.user_id, s.ts, s.model, s.action,
       s.input_tokens, s.output_tokens, s.latency_ms, s.reported_cost_usd, p.cost_usd, p.credits
FROM {{ priced }} p
JOIN {{ sources }} s ON s.key = p.key AND s.line_no = p.line_no
