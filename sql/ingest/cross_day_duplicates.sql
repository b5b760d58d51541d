-- First occurrences on this landing date whose request_id was already seen on an earlier one
-- (SPEC §1.3): duplicates, kept for audit with the date of their original. Dates compare the
-- 128-bit hashes of their ids (h1, h2).
SELECT e.key, e.line_no, min(o.landing_date) AS original_landing_date
FROM {today} e
JOIN (SELECT h1, h2, landing_date FROM {earlier} WHERE first_in_date) o USING (h1, h2)
WHERE e.first_in_date
GROUP BY ALL
