-- JSON lines -> the fields of SPEC §1.1, each with its JSON type (`<field>__k`, NULL where the
-- key is absent, 'NULL' where it is null) and its value cast to the column type (NULL where the
-- cast fails). Input: {lines}(file_idx, line_no, raw, utf8_ok).
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
       k[1] AS request_id__k, v[1] AS request_id,
       k[2] AS org_id__k, v[2] AS org_id,
       k[3] AS user_id__k, v[3] AS user_id,
       k[4] AS ts__k, {parse_ts(v[4])} AS ts,
       k[5] AS model__k, v[5] AS model,
       k[6] AS action__k, v[6] AS action,
       k[7] AS input_tokens__k, try_cast(v[7] AS BIGINT) AS input_tokens,
       k[8] AS output_tokens__k, try_cast(v[8] AS BIGINT) AS output_tokens,
       k[9] AS latency_ms__k, try_cast(v[9] AS BIGINT) AS latency_ms,
       k[10] AS cost_usd__k, v[10] AS cost_usd
FROM parsed
