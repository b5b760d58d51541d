-- params:
-- The valid rows of one landing date, priced, in landing order (file in key byte order, then
-- line: the order of `classified`), with first_in_date marking the first occurrence of each
-- request_id on that date (later_occurrences.sql). Only what pricing and deduplication decided
-- is kept, and the 128-bit hash of the request_id (h1, h2) that later dates compare theirs with:
-- the landing date and the file keys are in the partition's manifest, and the event's own fields
-- stay in its source (event_sources.sql), joined back by (key, line_no) in
-- priced_event_fields.sql.
SELECT file_idx, line_no, h1, h2, cost_usd, credits, first_in_date
FROM classified
WHERE reason IS NULL
