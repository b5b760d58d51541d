-- params:
-- The valid rows of one landing date whose request_id occurred before on that date (file in key
-- byte order, then line) are duplicates within the date: not first_in_date. Only ids whose
-- hash repeats are compared as strings: the test stays exact. An UPDATE, not a join, so that
-- `classified` keeps its order.
UPDATE classified c SET first_in_date = false
FROM (SELECT file_idx, line_no
      FROM (SELECT file_idx, line_no,
                   row_number() OVER (PARTITION BY request_id ORDER BY file_idx, line_no) AS occurrence
            FROM classified
            WHERE reason IS NULL
              AND h1 IN (SELECT h1 FROM classified WHERE reason IS NULL GROUP BY 1 HAVING count(*) > 1))
      WHERE occurrence > 1) l
WHERE c.file_idx = l.file_idx AND c.line_no = l.line_no
