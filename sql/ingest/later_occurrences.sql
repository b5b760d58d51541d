-- The valid rows of one landing date whose request_id occurred before on that date (file in key
-- byte order, then line): duplicates within the date. Only ids whose hash repeats are compared
-- as strings: the test stays exact.
CREATE OR REPLACE TEMP TABLE later_occurrences AS
SELECT file_idx, line_no
FROM (SELECT file_idx, line_no, row_number() OVER (PARTITION BY request_id ORDER BY file_idx, line_no) AS occurrence
      FROM classified
      WHERE reason IS NULL
        AND h1 IN (SELECT h1 FROM classified WHERE reason IS NULL GROUP BY 1 HAVING count(*) > 1))
WHERE occurrence > 1
