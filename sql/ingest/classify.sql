-- params: fields, landing_date, request_hash, rate_period, rate_periods, customers_started, customer_ended
-- Quarantine reasons of SPEC §1.2 (first matching, in order), then the price of every valid row
-- (SPEC §1.4). Input: {fields} (jsonl_fields.sql or landing.parquet_fields_sql) and the config as
-- lookups, not joins, so that rows keep the order of {fields} (a hash join reorders them):
-- - org_key, an ENUM of the customers in order of start date (those who cancel after the others,
--   see _register_config), and {customers_started}, the first code of the org's group whose
--   customer had not started on the day `day`: an org has not started on `day` when its code is
--   at least that;
-- - the ENUM types model_key and action_key, whose codes index the list variables action_credits
--   and action_tokens_per_credit, and rate_input_e9 and rate_output_e9: the rate of each model in
--   each period of the price book (between two dates on which some rate changes; {rate_period}
--   is the period of `day`, NULL before the first), at index model code x {rate_periods} +
--   period + 1, in units of 1e-9 USD per 1,000 tokens, so tokens x rate is the exact cost in
--   units of 1e-12 USD.
-- Cost and credits are computed exactly in 128 bits: a row whose cost does not fit DECIMAL(38, 12)
-- (10^26 USD) or whose credits do not fit 64 bits is a bad_type (SPEC §1.2), in bad_type's place.
-- Output: one row per row of {fields}, in its order, with its reason (NULL: valid), the 128-bit
-- hash of its request_id (h1, h2) and, where valid, its cost and credits; first_in_date starts
-- true for every valid row (later_occurrences.sql turns it off for the repeats); the codes of
-- its org, model and action, which tell what part of the config the date's rows reach.
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
              OR ts NOT BETWEEN TIMESTAMP '0001-01-01' AND TIMESTAMP '9999-12-31 23:59:59.999999'
                THEN 'bad_type'
        END AS intrinsic_reason
    FROM {{ fields }}
), keyed AS (
    SELECT *, enum_code(try_cast(org_id AS org_key)) AS org_code,
           enum_code(try_cast(model AS model_key)) AS model_code,
           enum_code(try_cast(action AS action_key)) + 1 AS action_no,
           CAST(ts AS DATE) AS day
    FROM intrinsic
), configured AS (
    SELECT *, org_code IS NOT NULL AS org_known, org_code >= {{ customers_started }} AS not_started,
           model_code IS NOT NULL AS model_known,
           getvariable('action_credits')[action_no] AS action_credits,
           getvariable('action_tokens_per_credit')[action_no] AS tokens_per_credit, action_no IS NOT NULL AS action_known,
           getvariable('rate_input_e9')[rate_no] AS input_e9, getvariable('rate_output_e9')[rate_no] AS output_e9
    FROM (SELECT *, model_code * {{ rate_periods }} + {{ rate_period }} + 1 AS rate_no FROM keyed)
), priced AS (
    SELECT *, CAST(input_tokens AS HUGEINT) * input_e9 + CAST(output_tokens AS HUGEINT) * output_e9 AS cost_e12,
           CASE WHEN tokens_per_credit IS NULL THEN action_credits
                ELSE greatest(action_credits, (CAST(input_tokens AS HUGEINT) + output_tokens + tokens_per_credit - 1)
                                              // tokens_per_credit)
           END AS exact_credits
    FROM configured
), reasoned AS (
    SELECT *, coalesce(intrinsic_reason, overflow_reason, CASE
        WHEN NOT org_known THEN 'unknown_org'
        WHEN NOT model_known THEN 'unknown_model'
        WHEN NOT action_known THEN 'unknown_action'
        WHEN input_e9 IS NULL THEN 'no_rate'
        WHEN not_started THEN 'before_customer_start'
        -- {customer_ended}: `day` is on or after the org's cancellation date (orgs who cancel have
        -- the last codes; the list variable customer_end has their dates in code order)
        WHEN {{ customer_ended }} THEN 'after_customer_end'
        WHEN ts >= {{ landing_date }} + INTERVAL 2 DAY THEN 'future_timestamp'
    END) AS reason
    FROM (SELECT *, CASE WHEN cost_e12 >= CAST('1e38' AS HUGEINT) OR exact_credits > 9223372036854775807
                         THEN 'bad_type' END AS overflow_reason FROM priced)
)
SELECT file_idx, line_no, request_id, {{ request_hash }}, reason, reason IS NULL AS first_in_date,
    org_code, model_code, action_no,
    CASE WHEN reason IS NULL THEN CAST(cost_e12 AS DECIMAL(38, 0)) * CAST('1e-12' AS DECIMAL(38, 12)) END AS cost_usd,
    CASE WHEN reason IS NULL THEN CAST(exact_credits AS BIGINT) END AS credits
FROM reasoned
