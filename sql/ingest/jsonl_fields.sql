-- params: lines, paths, type_paths, parse_ts
-- JSON lines -> the fields of SPEC §1.1, each with its value cast to the column type (NULL where
-- the cast fails), whether it is missing (`<field>__missing`: absent or null) and whether its JSON
-- type is wrong (`<field>__bad`), with the line's text (raw) for the quarantine.
-- Input: {lines}(file_idx, line_no, raw, utf8_ok).
-- k: the JSON types of the whole line (k[1]) and of each field (k[n + 1]); v: their texts.
--
-- A line is malformed unless it is one strict JSON object (SPEC §1.2). DuckDB's parser also takes
-- a trailing comma, NaN and Infinity, and a key twice in one object, so a line it reads is checked:
-- - a `,` before the closing `}` is a trailing comma (the last member's value cannot end in a
--   comma): malformed;
-- - the typical line, whose required fields have their types, whose cost_usd (if any) is a
--   scalar and not NaN, and which has no other key (json_keys counts a key twice twice), has no
--   nested value nor a key twice: strict;
-- - else, where a member is nested or a float (NaN and Infinity are DOUBLE): strict_json, the
--   exact parse (Python), for that line only;
-- - else (scalar members): strict unless a key repeats.
WITH parsed AS (
    SELECT file_idx, line_no, raw, k, coalesce(k[1] = 'OBJECT', false) AS is_object,
           CASE WHEN k[1] = 'OBJECT' THEN json_extract_string(raw, {{ paths }}) END AS v
    FROM (SELECT *, CASE WHEN utf8_ok AND json_valid(raw) THEN json_type(raw, {{ type_paths }}) END AS k FROM {{ lines }})
)
SELECT file_idx, line_no, raw,
       NOT CASE
           WHEN NOT is_object OR regexp_matches(raw, ',\s*}\s*$') THEN false
           WHEN k[2] = 'VARCHAR' AND k[3] = 'VARCHAR' AND k[4] = 'VARCHAR' AND k[5] = 'VARCHAR' AND k[6] = 'VARCHAR'
            AND k[7] = 'VARCHAR' AND k[8] IN ('UBIGINT', 'BIGINT') AND k[9] IN ('UBIGINT', 'BIGINT')
            AND k[10] IN ('UBIGINT', 'BIGINT')
            AND len(json_keys(raw)) = 9 + (k[11] IS NOT NULL)::INTEGER
            AND (k[11] IS NULL OR k[11] NOT IN ('OBJECT', 'ARRAY', 'DOUBLE') OR regexp_matches(v[10], '^-?[0-9]'))
               THEN true
           WHEN list_has_any(json_type(raw, '$.*'), ['OBJECT', 'ARRAY', 'DOUBLE']) THEN strict_json(raw)
           ELSE len(list_distinct(json_keys(raw))) = len(json_keys(raw))
       END AS malformed,
       v[1] AS request_id, coalesce(k[2], 'NULL') = 'NULL' AS request_id__missing, k[2] <> 'VARCHAR' AS request_id__bad,
       v[2] AS org_id, coalesce(k[3], 'NULL') = 'NULL' AS org_id__missing, k[3] <> 'VARCHAR' AS org_id__bad,
       v[3] AS user_id, coalesce(k[4], 'NULL') = 'NULL' AS user_id__missing, k[4] <> 'VARCHAR' AS user_id__bad,
       {{ parse_ts("v[4]") }} AS ts, coalesce(k[5], 'NULL') = 'NULL' AS ts__missing, k[5] <> 'VARCHAR' AS ts__bad,
       v[5] AS model, coalesce(k[6], 'NULL') = 'NULL' AS model__missing, k[6] <> 'VARCHAR' AS model__bad,
       v[6] AS action, coalesce(k[7], 'NULL') = 'NULL' AS action__missing, k[7] <> 'VARCHAR' AS action__bad,
       try_cast(v[7] AS BIGINT) AS input_tokens, coalesce(k[8], 'NULL') = 'NULL' AS input_tokens__missing,
       k[8] NOT IN ('BIGINT', 'UBIGINT') AS input_tokens__bad,
       try_cast(v[8] AS BIGINT) AS output_tokens, coalesce(k[9], 'NULL') = 'NULL' AS output_tokens__missing,
       k[9] NOT IN ('BIGINT', 'UBIGINT') AS output_tokens__bad,
       try_cast(v[9] AS BIGINT) AS latency_ms, coalesce(k[10], 'NULL') = 'NULL' AS latency_ms__missing,
       k[10] NOT IN ('BIGINT', 'UBIGINT') AS latency_ms__bad,
       CASE WHEN k[11] IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'VARCHAR') AND try_cast(v[10] AS DECIMAL(38, 12)) IS NOT NULL
            THEN v[10] END AS cost_usd
FROM parsed
