"""Benchmarks: docket-nats against docket on Redis (never part of the test suite)."""
