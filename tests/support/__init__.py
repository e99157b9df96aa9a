"""Shared test helpers (importable as `support.*` from any test): tiny models, the CLI runner, hardware fakes,
synthetic run directories, the reliability suite's helpers and a headless-Chromium client. Test modules and
conftest.py files import from here, never from each other."""
