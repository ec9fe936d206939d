"""Benchmarks of lrsearch; run one with ``python -m bench.<name>`` (methods and results: docs/benchmarks.md)."""
