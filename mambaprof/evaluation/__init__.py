"""Accuracy without network: perplexity on held-out text and synthetic selective-copying and
associative-recall tasks, for byte-level language models (token id = byte value)."""
