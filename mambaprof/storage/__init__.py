"""Storage: run directories (atomic Parquet writes, the run record, reading tables back) and the Parquet schema.
May import: the top-level errors and taxonomy only; it never loads a model or measures."""
