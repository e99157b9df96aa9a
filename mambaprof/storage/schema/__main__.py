"""`python -m mambaprof.storage.schema` prints docs/SCHEMA.md."""

from mambaprof.storage.schema import render_markdown

print(render_markdown(), end="")
