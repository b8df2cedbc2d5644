"""Benchmarks that print JSON. Run each from the repository root: ``python -m bench.NAME``."""
