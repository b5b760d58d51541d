-- The valid rows of one landing date, priced, in landing order (key in byte order, then line),
-- with first_in_date marking the first occurrence of each request_id on that date: only the few
-- ids that occur more than once (repeated_ids, with their first position) need a comparison.
SELECT DATE '{landing_date}' AS landing_date,
       k.key, c.line_no, c.request_id, c.org_id, c.user_id, c.ts, c.model, c.action,
       c.input_tokens, c.output_tokens, c.latency_ms,
       CAST(c.cost_usd AS VARCHAR) AS reported_cost_usd,
       CAST(CAST(c.input_tokens AS HUGEINT) * c.input_e9 + CAST(c.output_tokens AS HUGEINT) * c.output_e9
            AS DECIMAL(38, 0)) * CAST('1e-12' AS DECIMAL(38, 12)) AS cost_usd,
       CASE WHEN c.tokens_per_credit IS NULL THEN c.action_credits
            ELSE greatest(c.action_credits,
                          (c.input_tokens + c.output_tokens + c.tokens_per_credit - 1) // c.tokens_per_credit)
       END AS credits,
       r.request_id IS NULL OR (c.file_idx, c.line_no) = (r.file_idx, r.line_no) AS first_in_date
FROM classified c
JOIN files k USING (file_idx)
LEFT JOIN repeated_ids r ON r.request_id = c.request_id
WHERE c.reason IS NULL
ORDER BY c.file_idx, c.line_no
