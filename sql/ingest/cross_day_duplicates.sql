-- First occurrences on this landing date whose request_id was already seen on an earlier one
-- (SPEC §1.3): duplicates, kept for audit with the date of their original.
SELECT e.request_id, e.key, e.line_no, min(o.landing_date) AS original_landing_date
FROM {today} e
JOIN (SELECT request_id, landing_date FROM {earlier} WHERE first_in_date) o USING (request_id)
WHERE e.first_in_date
GROUP BY ALL
ORDER BY e.key, e.line_no
