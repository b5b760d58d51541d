-- Quarantine reasons of SPEC §1.2 (first matching, in order), then the price of every valid row
-- (SPEC §1.4). Input: {fields} (jsonl_fields.sql or landing.parquet_fields_sql), and the config
-- tables customers(org_id, start_date), model_names(model), actions(action, credits,
-- tokens_per_credit), rates(model, effective_from, effective_until, input_e9, output_e9), one row
-- per period in which a rate applies, where *_e9 is USD per 1,000 tokens in units of 1e-9, so
-- tokens x rate_e9 is the exact cost in units of 1e-12 USD. Output: one row per row of {fields}
-- with its reason (NULL: valid), the 128-bit hash of its request_id (h1, h2) and, where
-- valid, its cost and credits.
WITH intrinsic AS (
    SELECT *,
        CASE
            WHEN malformed THEN 'malformed'
            WHEN request_id__missing OR org_id__missing OR user_id__missing OR ts__missing OR model__missing
              OR action__missing OR input_tokens__missing OR output_tokens__missing OR latency_ms__missing
                THEN 'missing_field'
            WHEN request_id__bad OR length(request_id) NOT BETWEEN 1 AND 200
              OR org_id__bad OR user_id__bad OR model__bad OR action__bad OR ts__bad OR ts IS NULL
              OR input_tokens__bad OR input_tokens IS NULL OR input_tokens < 0
              OR output_tokens__bad OR output_tokens IS NULL OR output_tokens < 0
              OR latency_ms__bad OR latency_ms IS NULL OR latency_ms < 0
              OR cost_usd__bad
                THEN 'bad_type'
        END AS intrinsic_reason
    FROM {fields}
), configured AS (
    SELECT i.*, c.start_date, m.model IS NOT NULL AS model_known,
           a.credits AS action_credits, a.tokens_per_credit, a.action IS NOT NULL AS action_known,
           r.input_e9, r.output_e9
    FROM intrinsic i
    LEFT JOIN customers c ON i.intrinsic_reason IS NULL AND c.org_id = i.org_id
    LEFT JOIN model_names m ON i.intrinsic_reason IS NULL AND m.model = i.model
    LEFT JOIN actions a ON i.intrinsic_reason IS NULL AND a.action = i.action
    LEFT JOIN rates r ON i.intrinsic_reason IS NULL AND r.model = i.model
        AND CAST(i.ts AS DATE) >= r.effective_from AND CAST(i.ts AS DATE) < r.effective_until
), reasoned AS (
    SELECT *, coalesce(intrinsic_reason, CASE
        WHEN start_date IS NULL THEN 'unknown_org'
        WHEN NOT model_known THEN 'unknown_model'
        WHEN NOT action_known THEN 'unknown_action'
        WHEN input_e9 IS NULL THEN 'no_rate'
        WHEN ts < start_date THEN 'before_customer_start'
        WHEN ts >= DATE '{landing_date}' + INTERVAL 2 DAY THEN 'future_timestamp'
    END) AS reason
    FROM configured
)
SELECT file_idx, line_no, request_id, {request_hash}, reason,
    CASE WHEN reason IS NULL THEN
        CAST(CAST(input_tokens AS HUGEINT) * input_e9 + CAST(output_tokens AS HUGEINT) * output_e9
             AS DECIMAL(38, 0)) * CAST('1e-12' AS DECIMAL(38, 12))
    END AS cost_usd,
    CASE WHEN reason IS NOT NULL THEN NULL
         WHEN tokens_per_credit IS NULL THEN action_credits
         ELSE greatest(action_credits, (input_tokens + output_tokens + tokens_per_credit - 1) // tokens_per_credit)
    END AS credits
FROM reasoned
