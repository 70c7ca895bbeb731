"""Benchmarks of paychan (gas). Importable from the repository root, so tests can reuse the measurements."""
