"""Reports: readers of run directories (never re-running a model) and their renderers."""
