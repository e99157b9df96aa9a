"""Collectors: one module per signal. They measure the windows they are handed; they never render.

May import: model (to read its structure and call it), storage's schema and the top level; never the run layer
(sweep, measure, instrumenter), distributed, pruning, cli or reports. `markers` (component windows and listeners)
and `context` (the point a collector is handed, the collector protocols) are the types the run layer builds."""
