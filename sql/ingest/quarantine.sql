-- params: landing_date
-- The rows of one landing date that broke a rule of SPEC §1.1, each with its first reason.
SELECT {{ landing_date }} AS landing_date, k.key, c.line_no,
       r.raw, c.reason
FROM classified c
JOIN files k USING (file_idx)
LEFT JOIN quarantined_raw r USING (file_idx, line_no)
WHERE c.reason IS NOT NULL
ORDER BY c.file_idx, c.line_no
