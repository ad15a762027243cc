"""Benchmark harnesses (run as ``python -m benchmarks.<name>``)."""
