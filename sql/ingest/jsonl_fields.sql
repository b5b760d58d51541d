-- JSON lines -> the fields of SPEC §1.1, each with its value cast to the column type (NULL where
-- the cast fails), whether it is missing (`<field>__missing`: absent or null) and whether its JSON
-- type is wrong (`<field>__bad`), with the line's text (raw) for the quarantine.
-- Input: {lines}(file_idx, line_no, raw, utf8_ok).
WITH objects AS (
    SELECT file_idx, line_no, raw,
           CASE WHEN utf8_ok AND json_valid(raw) THEN json_type(raw) = 'OBJECT' ELSE false END AS is_object
    FROM {lines}
), parsed AS (
    SELECT file_idx, line_no, raw, is_object,
           CASE WHEN is_object THEN json_type(raw, {paths}) END AS k,
           CASE WHEN is_object THEN json_extract_string(raw, {paths}) END AS v
    FROM objects
)
SELECT file_idx, line_no, raw, NOT is_object AS malformed,
       v[1] AS request_id, coalesce(k[1], 'NULL') = 'NULL' AS request_id__missing, k[1] <> 'VARCHAR' AS request_id__bad,
       v[2] AS org_id, coalesce(k[2], 'NULL') = 'NULL' AS org_id__missing, k[2] <> 'VARCHAR' AS org_id__bad,
       v[3] AS user_id, coalesce(k[3], 'NULL') = 'NULL' AS user_id__missing, k[3] <> 'VARCHAR' AS user_id__bad,
       {parse_ts(v[4])} AS ts, coalesce(k[4], 'NULL') = 'NULL' AS ts__missing, k[4] <> 'VARCHAR' AS ts__bad,
       v[5] AS model, coalesce(k[5], 'NULL') = 'NULL' AS model__missing, k[5] <> 'VARCHAR' AS model__bad,
       v[6] AS action, coalesce(k[6], 'NULL') = 'NULL' AS action__missing, k[6] <> 'VARCHAR' AS action__bad,
       try_cast(v[7] AS BIGINT) AS input_tokens, coalesce(k[7], 'NULL') = 'NULL' AS input_tokens__missing,
       k[7] NOT IN ('BIGINT', 'UBIGINT') AS input_tokens__bad,
       try_cast(v[8] AS BIGINT) AS output_tokens, coalesce(k[8], 'NULL') = 'NULL' AS output_tokens__missing,
       k[8] NOT IN ('BIGINT', 'UBIGINT') AS output_tokens__bad,
       try_cast(v[9] AS BIGINT) AS latency_ms, coalesce(k[9], 'NULL') = 'NULL' AS latency_ms__missing,
       k[9] NOT IN ('BIGINT', 'UBIGINT') AS latency_ms__bad,
       v[10] AS cost_usd,
       coalesce(k[10], 'NULL') <> 'NULL' AND (k[10] NOT IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'VARCHAR')
           OR try_cast(v[10] AS DECIMAL(38, 12)) IS NULL) AS cost_usd__bad
FROM parsed
