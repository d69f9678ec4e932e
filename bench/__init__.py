"""Benchmarks: `bench/run` runs them all (see docs/PERFORMANCE.md)."""
