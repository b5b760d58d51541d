-- The valid rows of one landing date, priced, in landing order (key in byte order, then line),
-- with first_in_date marking the first occurrence of each request_id on that date: only the few
-- ids that occur more than once (repeated_ids, with their first position) need a comparison.
-- Only what pricing and deduplication decided is kept here; the event's own fields stay in its
-- source (event_sources.sql), joined back by (key, line_no) in priced_event_fields.sql.
SELECT DATE '{landing_date}' AS landing_date, k.key, c.line_no, c.request_id, c.cost_usd, c.credits,
       r.request_id IS NULL OR (c.file_idx, c.line_no) = (r.file_idx, r.line_no) AS first_in_date
FROM classified c
JOIN files k USING (file_idx)
LEFT JOIN repeated_ids r ON r.request_id = c.request_id
WHERE c.reason IS NULL
ORDER BY c.file_idx, c.line_no
