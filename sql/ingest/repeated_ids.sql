-- request_ids that occur more than once among one landing date's valid rows, with the position
-- of their first occurrence (file in key byte order, then line).
CREATE OR REPLACE TEMP TABLE repeated_ids AS
SELECT request_id, arg_min(file_idx, pos) AS file_idx, arg_min(line_no, pos) AS line_no
FROM (SELECT request_id, file_idx, line_no, CAST(file_idx AS BIGINT) * 4294967296 + line_no AS pos
      FROM classified WHERE reason IS NULL)
GROUP BY request_id
HAVING count(*) > 1
