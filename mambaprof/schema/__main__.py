"""`python -m mambaprof.schema` prints docs/SCHEMA.md."""

from mambaprof.schema import render_markdown

print(render_markdown(), end="")
