"""Collectors: one module per signal. They measure; they never render."""
