"""Benchmarks of lrsearch; run one with ``python -m bench.<name>`` (see README, "Benchmarks")."""
