"""Where billing data is kept: `objects` (the object store: local folder or S3), `warehouse`
(datasets of Parquet partitions committed by manifest), `duck` (DuckDB connections and SQL
templates) and `billing_db` (invoices, numbering and documents in SQLite or PostgreSQL).
"""
