-- params: fields, files
-- The fields of landed events by (key, line_no), typed as classify.sql read them.
-- Input: {fields} (jsonl_fields.sql or landing.parquet_fields_sql) and {files}(file_idx, key).
SELECT k.key, f.line_no, f.request_id, f.org_id, f.user_id, f.ts, f.model, f.action,
       f.input_tokens, f.output_tokens, f.latency_ms, CAST(f.cost_usd AS VARCHAR) AS reported_cost_usd
FROM {{ fields }} f
JOIN {{ files }} k USING (file_idx)
