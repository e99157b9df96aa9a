"""Accuracy without network: perplexity on held-out text and synthetic selective-copying and
associative-recall tasks, for byte-level language models (token id = byte value).

May import: model, storage and the top level. `chance` (what counts as not learned) imports nothing and is what
reports may read."""
