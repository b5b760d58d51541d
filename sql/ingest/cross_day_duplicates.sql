-- First occurrences on this landing date whose request_id was already seen on an earlier one
-- (SPEC §1.3): duplicates, kept for audit with the date of their original. Dates compare the
-- 128-bit hashes of their ids (h1, h2). The earlier dates' first occurrences are first narrowed
-- to those whose h1 is one of today's, by a semi join (every earlier event probes a set of
-- today's h1: cheaper than joining every earlier event on (h1, h2)), then joined with today's.
WITH seen AS MATERIALIZED (
    SELECT h1, h2, landing_date FROM {earlier}
    WHERE first_in_date AND h1 IN (SELECT h1 FROM {today} WHERE first_in_date)
)
SELECT e.key, e.line_no, min(o.landing_date) AS original_landing_date
FROM {today} e
JOIN seen o USING (h1, h2)
WHERE e.first_in_date
GROUP BY ALL
